"""Perturb a model's self-attention (identity attention, as Perturbed-Attention Guidance needs).

    python examples/image_pag.py --model fashion-large

PAG (Ahn et al., arXiv 2403.17377) contrasts the normal prediction with one whose self-attention
maps are replaced by the identity. This prints how much the prediction changes when all, or only
the middle, self-attention layers are perturbed, and that unperturbed rows stay unchanged.
"""

from __future__ import annotations

import argparse

import torch

from decoding.models.image import load_image_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--t", type=float, default=500.0, help="diffusion timestep (0..999)")
    a = p.parse_args()
    model = load_image_model(a.model)
    net = model.net
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 28, 28, generator=g)
    lam = model.schedule.lambda_(torch.full((4,), a.t)).float()
    y = torch.tensor([0, 3, 5, 7])
    with torch.no_grad():
        normal = net(x, lam, y)
        layers = net.attention_layers()
        with net.perturbed_attention():
            every = net(x, lam, y)
        mid = [len(layers) // 2]
        rows = torch.tensor([True, False, True, False])
        with net.perturbed_attention(rows=rows, layers=mid):
            some = net(x, lam, y)
    def change(o: torch.Tensor, ref: torch.Tensor) -> float:
        return float((o - ref).pow(2).mean().sqrt())

    print(f"{len(layers)} self-attention layers")
    print(f"all layers perturbed: RMS change of the output {change(every, normal):.4f}")
    print(f"middle layer, rows 0 and 2: change {change(some[rows], normal[rows]):.4f} on perturbed rows, "
          f"{float((some[~rows] - normal[~rows]).abs().max()):.2e} on the others")


if __name__ == "__main__":
    main()
