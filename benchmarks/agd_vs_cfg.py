"""AGD (one adapted call per step, arXiv 2503.07274) against CFG (two calls) and no guidance: speed and agreement.

    python benchmarks/agd_vs_cfg.py --model fashion-large --device cuda --n 2000 --steps 10 20 \\
        [--adapters models/fashion-large-agd] [--out benchmarks/results/agd_vs_cfg.json]

Same model, solver (DPM-Solver++(2M)), steps, seed (so the same starting noise), classes ``i % 10``
and batch for the three rows, each timed after a warm-up call. Per row: images/s, NFE, class
accuracy by ``models/fashion-classifier``, and the RMS pixel distance (images in [-1, 1]) to the CFG
samples of the same noise: how closely AGD reproduces CFG, next to how far the unguided model is.
Without ``--adapters`` the adapters are a freshly initialised set (zero outputs: the conditional
model's images at the cost of adapted calls), saved for the model into a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import torch

import decoding as dc
from decoding.evals.classifier import class_accuracy, load_classifier
from decoding.io import atomic_write_bytes
from decoding.models.adapters import base_fingerprint, save_adapters
from decoding.models.image import read_config
from decoding.nn.guidance_adapter import AdapterConfig, GuidanceAdapters


def fresh_adapters(model: str, folder: Path) -> Path:
    """A zero-initialised adapter set for ``model`` (a folder or zoo name), saved in ``folder``."""
    h = dc.load(model, "cpu")
    net = h.model.net
    adapters = GuidanceAdapters(AdapterConfig(net.stage_widths(), 4 * net.cfg.channels))
    config = read_config(model)
    meta = {"scale_range": [1.0, 5.0], "default_scale": 2.0,
            "base": {"name": model, "unet": net.cfg.to_dict(), "prediction": config["prediction"],
                     "schedule": config["schedule"], "fingerprint": base_fingerprint(net),
                     "parameters": sum(p.numel() for p in net.parameters())}}
    return save_adapters(adapters, folder, meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fashion-large")
    p.add_argument("--adapters", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = a.adapters or str(fresh_adapters(a.model, Path(tmp) / "agd"))
        h = dc.load(a.model, a.device)
        clf = load_classifier("fashion-classifier", a.device)
        labels = torch.arange(a.n) % h.model.num_classes
        rows = []
        for steps in a.steps:
            speed, images = {}, {}
            for name, guidance in (("none", None), ("cfg", [f"cfg:{a.scale:g}"]), ("agd", [f"agd:{a.scale:g},adapters={adapters}"])):
                opts = {"steps": steps, "guidance": guidance, "batch_size": a.batch_size}
                dc.generate(h, n=min(a.n, a.batch_size), class_label=labels[: min(a.n, a.batch_size)], seed=1, **opts)
                g = dc.generate(h, n=a.n, class_label=labels, seed=0, **opts)
                images[name] = g.images
                speed[name] = {"images_per_second": round(a.n / g.seconds, 1), "nfe": max(g.nfe),
                               "class_accuracy": round(class_accuracy(clf, g.images, labels), 4)}
            for name in ("none", "agd"):
                rms = (images[name] - images["cfg"]).flatten(1).pow(2).mean(1).sqrt().mean()
                speed[name]["rms_to_cfg"] = round(float(rms), 4)
            row = {"steps": steps, **speed, "agd_over_cfg": round(speed["agd"]["images_per_second"] / speed["cfg"]["images_per_second"], 2),
                   "agd_over_none": round(speed["agd"]["images_per_second"] / speed["none"]["images_per_second"], 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    dev = torch.device(a.device)
    doc = {"command": "python benchmarks/agd_vs_cfg.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "date": datetime.date.today().isoformat(), "torch": torch.__version__, "model": a.model, "adapters": a.adapters,
           "scale": a.scale,
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "n": a.n, "rows": rows}
    if a.out:
        atomic_write_bytes(a.out, (json.dumps(doc, indent=1) + "\n").encode())
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
