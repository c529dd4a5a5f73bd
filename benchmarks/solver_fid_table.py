"""FID of every registered solver at NFE 5, 6, 8, 10, 15, 20 on a trained model (issue 24's table).

Two stages, so that the GPU need not have the Inception network:

    # on the GPU: sample 10,000 images per (solver, NFE); FID there if Inception is found
    python benchmarks/solver_fid_table.py generate --model fashion-large --device cuda --out DIR
    # where Inception is (e.g. this CPU): FID of the shards the first stage wrote, then the table
    python benchmarks/solver_fid_table.py score --out DIR

``generate`` draws one set of starting noises (seed ``--seed``, on the device) and the labels
``i mod 10`` for all configs, samples each (solver, NFE) with the solver's default time grid
(:func:`decoding.solvers.timesteps.default_spacing`; ``--spacing`` overrides) and either computes
FID against ``models/fid`` (when :func:`decoding.evals.fid.inception_path` finds the network, or
``--fid`` forces it) or writes the images as a uint8 shard ``DIR/<solver>_nfe<N>.npz`` (7.8 MB
for 10,000 28x28 images). Each finished config appends a line to ``DIR/results.jsonl``; a rerun
skips the configs already there, so the table can be filled in several commands. ``score``
computes the FID of every shard without one (0.1-0.2 s per image on one CPU core), then writes
``DIR/fid_table.md`` and ``DIR/fid_table.json`` (the best solver of each NFE in bold / listed).

DPM-Solver-v3 and DC-Solver read their statistics and searched ratios from ``models/<model>/``
(``--model`` as zoo name). ``table`` only prints the table of what ``results.jsonl`` holds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding import decode  # noqa: E402
from decoding.core.types import new_generator  # noqa: E402
from decoding.processes.continuous import ContinuousProcess  # noqa: E402
from decoding.solvers.registry import SOLVERS, get_solver  # noqa: E402
from decoding.solvers.timesteps import default_spacing  # noqa: E402

NFES = [5, 6, 8, 10, 15, 20]


def solver_options(name: str, model: str) -> dict[str, Any]:
    """The options a registered solver needs on ``model`` (its statistics / searched ratios)."""
    if name == "dpm_solver_v3":
        return {"ems": model}
    if name == "dc_solver":
        return {"ratios": model}
    return {}


def _done(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _append(out: Path, row: dict) -> None:
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _inception_available() -> bool:
    from decoding.evals.fid import inception_path

    try:
        inception_path()
    except (FileNotFoundError, ValueError):
        return False
    return True


@torch.no_grad()
def generate(args: argparse.Namespace) -> list[dict]:
    from decoding.evals.fid import fid, to_uint8
    from decoding.models.image import load_image_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model = load_image_model(args.model, device, dtype=dtype)
    score_here = args.fid or (not args.shards and _inception_available())
    cfg = model.net.cfg
    noise = torch.randn((args.n, cfg.in_channels, cfg.image_size, cfg.image_size),
                        generator=new_generator(args.seed, device), device=device)
    labels = (torch.arange(args.n) % model.num_classes).to(device)
    done = {(r["solver"], r["nfe"]) for r in _done(out)}
    names = sorted(SOLVERS) if args.solvers == ["all"] else args.solvers
    rows = []
    for name in names:
        for nfe in args.nfe:
            if (name, nfe) in done:
                continue
            solver = get_solver(name, **solver_options(name, args.model))
            spacing = args.spacing or default_spacing(solver)
            process = ContinuousProcess(model.schedule, solver, spacing=spacing)
            gen = new_generator(args.seed + 1, device)  # stochastic solvers' noise
            images, start = [], time.perf_counter()
            for i in range(0, args.n, args.batch):
                res = decode(model, process, noise[i : i + args.batch], steps=nfe, generator=gen,
                             cond=labels[i : i + args.batch])
                images.append(to_uint8(res.x).cpu())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            imgs = torch.cat(images)
            row = {"solver": name, "nfe": nfe, "spacing": spacing, "n": args.n, "seed": args.seed,
                   "model": args.model, "dtype": str(model.dtype).removeprefix("torch."), "device": _device_name(device),
                   "sampling_seconds": round(seconds, 3), "images_per_s": round(args.n / seconds, 1)}
            if score_here:
                row["fid"] = fid(imgs, device=device)
            else:
                shard = out / f"{name}_nfe{nfe}.npz"
                np.savez_compressed(shard, images=imgs.numpy(), labels=labels.cpu().numpy().astype(np.uint8))
                row["shard"] = shard.name
            _append(out, row)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def score(args: argparse.Namespace) -> list[dict]:
    """FID of the shards in ``args.out`` that have none yet (rewrites ``results.jsonl``)."""
    from decoding.evals.fid import fid

    out = Path(args.out)
    rows = _done(out)
    for row in rows:
        if "fid" not in row and "shard" in row:
            images = torch.from_numpy(np.load(out / row["shard"])["images"])
            row["fid"] = fid(images, device=args.device, progress=True)
            row["fid_scored_on"] = _device_name(torch.device(args.device))
            print(json.dumps(row), flush=True)
            (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def table(rows: list[dict], nfes: list[int] | None = None) -> tuple[str, dict]:
    """Markdown (rows: solvers, columns: NFE, best FID per NFE in bold) and a JSON summary."""
    scored = [r for r in rows if "fid" in r]
    nfes = nfes or sorted({r["nfe"] for r in scored})
    solvers = sorted({r["solver"] for r in scored})
    fid = {(r["solver"], r["nfe"]): r["fid"] for r in scored}
    best = {n: min((s for s in solvers if (s, n) in fid), key=lambda s, n=n: fid[(s, n)], default=None) for n in nfes}
    grid = {r["solver"]: r["spacing"] for r in scored}
    lines = ["| solver | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|---|" + "---|" * len(nfes)]
    for s in solvers:
        cells = []
        for n in nfes:
            v = fid.get((s, n))
            cells.append("-" if v is None else (f"**{v:.2f}**" if best[n] == s else f"{v:.2f}"))
        lines.append(f"| {s} | {grid[s]} | " + " | ".join(cells) + " |")
    lines.append("| best | | " + " | ".join(best[n] or "-" for n in nfes) + " |")
    summary = {"nfe": nfes, "best": {str(n): best[n] for n in nfes},
               "fid": {s: {str(n): fid.get((s, n)) for n in nfes} for s in solvers}, "rows": scored}
    return "\n".join(lines), summary


def write_table(out: Path) -> str:
    md, summary = table(_done(out))
    (out / "fid_table.md").write_text(md + "\n")
    (out / "fid_table.json").write_text(json.dumps(summary, indent=1))
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="sample every (solver, NFE); FID here or uint8 shards")
    g.add_argument("--model", default="fashion-large")
    g.add_argument("--solvers", nargs="+", default=["all"], help="registry names, or 'all'")
    g.add_argument("--nfe", type=int, nargs="+", default=NFES)
    g.add_argument("--n", type=int, default=10000)
    g.add_argument("--batch", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--spacing", default=None, help="one grid for all solvers (default: each solver's own)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--dtype", default="float32", help="network dtype (float32, bfloat16)")
    g.add_argument("--out", required=True)
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--shards", action="store_true", help="always write shards, never FID here")
    mode.add_argument("--fid", action="store_true", help="FID here (fail if Inception is missing)")
    s = sub.add_parser("score", help="FID of the shards in --out, then the table")
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="cpu")
    t = sub.add_parser("table", help="print the table of --out")
    t.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "generate":
        unknown = [] if args.solvers == ["all"] else sorted(set(args.solvers) - set(SOLVERS))
        if unknown:
            p.error(f"unknown solvers {unknown}; choose from {sorted(SOLVERS)} or 'all'")
        generate(args)
    elif args.cmd == "score":
        score(args)
    print(write_table(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
