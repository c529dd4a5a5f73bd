"""The VQ tokenizer of the DD teacher on the 10,000 Fashion-MNIST test images: reconstruction error, code usage, a grid.

    python benchmarks/dd_vq_check.py --vq models/fashion-vq --grid docs/perf/dd-vq-recon.png

Prints the mean squared error (pixels in [-1, 1]), the PSNR (peak-to-peak 2), the perplexity of the
code usage (``exp`` of its entropy; at most the codebook size) and the share of codes used, and
writes originals (odd rows) above their reconstructions (even rows). Reconstruction FID needs the
Inception network: ``benchmarks/dd_eval.py --vq ... --rows vq-recon``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from decoding.api.generation import make_grid
from decoding.data.fashion_mnist import fashion_splits
from decoding.models.vq import load_vq


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vq", required=True)
    p.add_argument("--data", help="Fashion-MNIST folder (default: $DECODING_FASHION_MNIST or the Debian path)")
    p.add_argument("--limit", type=int, help="first N test images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--grid", type=Path, help="PNG of 20 originals and their reconstructions")
    a = p.parse_args(argv)
    vq = load_vq(a.vq, a.device)
    _, (x, _), _ = fashion_splits(a.data, 1, a.limit, a.device)
    recon, tokens = [], []
    with torch.no_grad():
        for b in x.split(500):
            t = vq.encode(b)
            tokens.append(t)
            recon.append(vq.decode(t))
    r, t = torch.cat(recon), torch.cat(tokens)
    mse = float((r - x).pow(2).mean())
    counts = torch.bincount(t.flatten(), minlength=vq.cfg.codebook_size).double()
    prob = counts[counts > 0] / counts.sum()
    row = {"vq": a.vq, "images": int(x.shape[0]), "mse": mse, "psnr_db": 10 * math.log10(4.0 / mse),
           "perplexity": float(torch.exp(-(prob * prob.log()).sum())), "codes_used": float((counts > 0).double().mean()),
           "tokens": vq.cfg.num_tokens, "codebook": [vq.cfg.codebook_size, vq.cfg.code_dim]}
    print(json.dumps(row))
    if a.grid is not None:
        both = torch.cat([x[:10], r[:10], x[10:20], r[10:20]]).cpu()
        make_grid(((both.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), nrow=10, scale=2).save(a.grid)
        print(f"wrote {a.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
