"""Inference-time control of an UNCONDITIONAL model: restore a test image three ways, then steer towards a class with DTS.

    python examples/control_steering.py --model fashion-large --steps 20 --out steering.png

Part 1 (Steered Diffusion, arXiv 2310.00224): the centre of a Fashion-MNIST test image is cut out;
Steered Diffusion, plain replacement and DPS fill it in at the same NFE. The report grid shows
observation | steer | replace | dps | truth, with the PSNR of each in the printout.

Part 2 (Diffusion Tree Sampling, arXiv 2506.20701): ``n`` sneakers (class 7) from the unconditional
model, by a DTS tree per image with the shipped classifier's ``log p(7 | x)`` as reward. A second
call continues the same trees (anytime): the mean reward goes up with the rollouts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import decoding as dc
from decoding.control import DPS, DTS, ClassifierReward, Inpaint, Replace, Steer, box_mask
from decoding.control.images import save_report, shown_observation
from decoding.control.metrics import psnr


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n", type=int, default=4, help="images of each part")
    p.add_argument("--rollouts", type=int, default=8, help="DTS rollouts per tree and call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="steering.png")
    a = p.parse_args(argv)
    from decoding.data.fashion_mnist import load_fashion_mnist

    model = dc.load(a.model, device=a.device)
    images, _ = load_fashion_mnist("test")
    truth = images[: a.n].float()[:, None] / 127.5 - 1
    mask = box_mask(truth.shape[-1])
    cond = Inpaint(truth * mask, mask)
    columns = [shown_observation(cond, truth)]
    for name, g in (("steer", Steer(cond)), ("replace", Replace(cond)), ("dps", DPS(cond))):
        out = dc.generate(model, n=a.n, steps=a.steps, solver="ddpm", guidance=[g], seed=a.seed)
        columns.append(out.images)
        print(f"inpaint  {name:8s} PSNR {float(psnr(out.images, truth).mean()):6.2f} dB  NFE {max(out.nfe):.0f}")
    report = save_report(a.out, [*columns, truth])
    print(f"wrote {report}: observation | steer | replace | dps | truth")

    dts = DTS(ClassifierReward(7, device=a.device), rollouts=a.rollouts)
    for call in (1, 2):
        out = dc.generate(model, n=a.n, steps=a.steps, guidance=[dts], seed=a.seed + call)
        reward = torch.tensor(out.info["reward"])
        print(f"DTS call {call}: {out.settings['rollouts_total']} rollouts, mean log p(sneaker | x) {float(reward.mean()):.3f}, "
              f"NFE per image this call {sum(out.nfe) / len(out.nfe):.0f}")
    grid = Path(a.out).with_name(Path(a.out).stem + "_dts.png")
    out.save(grid)
    print(f"wrote {grid}: DTS samples of class 7 from the unconditional model")


if __name__ == "__main__":
    main()
