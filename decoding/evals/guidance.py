"""The guidance evaluation (issue 18): every guidance wrapper at equal NFE, samples saved for FID.

    python -m decoding.evals.guidance run --model fashion-large --small fashion-small \\
        --adapters models/fashion-large-agd --nfe 10 20 --n 10000 --device cuda --out evals/results/guidance
    python -m decoding.evals.fid samples evals/results/guidance/samples/*.npz > evals/results/guidance/scores.jsonl
    python -m decoding.evals.guidance report evals/results/guidance --scores evals/results/guidance/scores.jsonl

``run`` samples ``n`` class-balanced images (class ``i % 10``, one seed for every row, DPM-Solver++(2M),
``logsnr`` grid) per configuration and NFE budget, and writes per row ``samples/<row>.npz`` (uint8
``images`` ``(n, 1, 28, 28)``, ``labels``) and one line of ``timings.json`` (steps, measured NFE per
image, seconds, images/s after one warm-up call). Rows whose ``.npz`` exists are skipped, so a long
run splits into chunks (``--only`` picks rows by name). Configurations:

- ``none``: the conditional model (1 call per step);
- ``cfg-S`` for ``--cfg-scales`` (2 calls), ``cfg-S-rescale-PHI`` (Lin et al., arXiv 2305.08891);
- ``cfgpp-L`` for ``--cfgpp`` (CFG++, arXiv 2406.08070: 2 calls; its multistep form);
- ``pag-S`` for ``--pag-scales`` (arXiv 2403.17377: 2 calls), ``cfg-S-pag-P`` (3 calls in one batch);
- ``agd-S`` for ``--agd-scales`` (arXiv 2503.07274: the adapters of ``--adapters``, 1 call);
- ``stitch-F`` for ``--stitch`` with ``--small`` and CFG at ``--ref-scale`` (T-Stitch, arXiv 2402.14167).

Steps per row are ``round(NFE / calls per step)`` (at least 1); the table reports the measured NFE.
``report`` joins the timings with the FID / class-accuracy lines of ``python -m decoding.evals.fid
samples`` into ``results.json`` and a markdown table (``table.md``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import decoding as dc
from decoding.evals.fid import to_uint8
from decoding.evals.guidance_figures import grids, plots
from decoding.io import atomic_write_bytes


@dataclass(frozen=True)
class Config:
    """One guidance configuration: a row name, its ``guidance`` list and its network calls per step."""

    name: str
    guidance: tuple[str, ...]
    calls: int
    label: str

    def steps(self, nfe: int) -> int:
        return max(1, round(nfe / self.calls))


def configs(cfg_scales: list[float], rescale: tuple[float, float], cfgpp: list[float], pag_scales: list[float],
            cfg_pag: tuple[float, float], agd_scales: list[float], adapters: str | None, stitch: list[float],
            small: str | None, ref_scale: float) -> list[Config]:
    """The configurations of one evaluation (see the module docstring); AGD rows need ``adapters``, T-Stitch rows ``small``."""
    out = [Config("none", (), 1, "none (conditional)")]
    out += [Config(f"cfg-{s:g}", (f"cfg:{s:g}",), 2, f"CFG {s:g}") for s in cfg_scales]
    s, phi = rescale
    out.append(Config(f"cfg-{s:g}-rescale-{phi:g}", (f"cfg:{s:g},rescale={phi:g}",), 2, f"CFG {s:g} + rescale {phi:g}"))
    out += [Config(f"cfgpp-{lam:g}", (f"cfgpp:{lam:g}",), 2, f"CFG++ {lam:g}") for lam in cfgpp]
    out += [Config(f"pag-{p:g}", (f"pag:{p:g}",), 2, f"PAG {p:g}") for p in pag_scales]
    s, p = cfg_pag
    out.append(Config(f"cfg-{s:g}-pag-{p:g}", (f"cfg:{s:g}", f"pag:{p:g}"), 3, f"CFG {s:g} + PAG {p:g}"))
    if adapters:
        out += [Config(f"agd-{a:g}", (f"agd:{a:g},adapters={adapters}",), 1, f"AGD {a:g}") for a in agd_scales]
    if small:
        out += [Config(f"stitch-{f:g}", (f"stitch:{small}:{f:g}", f"cfg:{ref_scale:g}"), 2, f"T-Stitch {f:g} + CFG {ref_scale:g}")
                for f in stitch]
    return out


def run(model: str, rows: list[Config], nfes: list[int], n: int, out: Path, device: str, seed: int = 0,
        batch_size: int = 1000, only: list[str] | None = None, progress: bool = False,
        command: str | None = None) -> list[dict[str, Any]]:
    """Sample every row at every NFE budget into ``out/samples/*.npz`` and append timings to ``out/timings.json``."""
    handle = dc.load(model, device)
    labels = torch.arange(n) % handle.model.num_classes
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {"rows": []}
    dev = torch.device(device)
    timings.update({"model": model, "n": n, "seed": seed, "solver": "dpmpp_2m", "date": datetime.date.today().isoformat(),
                    "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
                    "command": command})
    done = []
    for nfe in nfes:
        for row in rows:
            name = f"{row.name}-nfe{nfe}"
            path = out / "samples" / f"{name}.npz"
            if (only and row.name not in only) or path.is_file():
                continue
            opts = {"steps": row.steps(nfe), "solver": "dpmpp_2m", "guidance": list(row.guidance) or None,
                    "batch_size": batch_size}
            warm = min(n, batch_size)
            dc.generate(handle, n=warm, class_label=labels[:warm], seed=seed + 1, **opts)
            g = dc.generate(handle, n=n, class_label=labels, seed=seed, progress=progress, **opts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".tmp.npz"), "wb") as f:
                np.savez_compressed(f, images=to_uint8(g.images).numpy(), labels=labels.numpy())
            path.with_suffix(".tmp.npz").replace(path)
            result = {"row": name, "config": row.name, "label": row.label, "guidance": g.settings["guidance"],
                      "nfe_budget": nfe, "steps": row.steps(nfe), "nfe": max(g.nfe), "calls_per_step": row.calls,
                      "seconds": round(g.seconds, 3), "images_per_second": round(n / max(g.seconds, 1e-9), 1),
                      "samples": str(path), "dtype": g.settings["dtype"]}
            print(json.dumps(result), flush=True)
            timings["rows"] = [r for r in timings["rows"] if r["row"] != name] + [result]
            atomic_write_bytes(timings_path, (json.dumps(timings, indent=1) + "\n").encode())
            done.append(result)
    return done


def report(folder: Path, scores: Path | None, speed: Path | None = None, grids_from: Path | None = None) -> str:
    """``results.json`` (timings + scores), ``table.md``, the plots and the sample grids in ``folder``; returns the table.

    Plots (``fid_vs_speed.png``, ``fid_vs_accuracy.png``) need scores; grids (``grids/<row>.png``) are drawn from
    the ``samples/`` of ``grids_from`` (default ``folder``), e.g. a small run whose samples are kept when the
    10,000-sample ones are not, and written into ``folder``.

    ``speed``: the folder of a second ``run`` (fewer samples, alone on the device) whose images/s replace
    those of ``folder``'s run, e.g. when the sampling for FID shared the device with other jobs. Every row
    must be in it (a row without a clean timing would be silently wrong).
    """
    timings = json.loads((folder / "timings.json").read_text())
    speed_n = None
    if speed is not None:
        clean = json.loads((speed / "timings.json").read_text())
        by_row = {r["row"]: r for r in clean["rows"]}
        missing = sorted(r["row"] for r in timings["rows"] if r["row"] not in by_row)
        if missing:
            raise ValueError(f"{speed}/timings.json has no timing of rows {missing}: run them there too (--only)")
        for r in timings["rows"]:
            r["images_per_second_shared"] = r["images_per_second"]
            r["images_per_second"] = by_row[r["row"]]["images_per_second"]
        speed_n = clean["n"]
        timings["speed"] = {"n": speed_n, "device_name": clean["device_name"], "date": clean["date"]}
    by_file: dict[str, dict[str, Any]] = {}
    if scores is not None:
        for line in scores.read_text().splitlines():
            if line.strip().startswith("{"):
                s = json.loads(line)
                by_file[Path(s["samples"]).name] = s
    rows = []
    for r in timings["rows"]:
        s = by_file.get(Path(r["samples"]).name, {})
        rows.append({**r, "fid": s.get("fid"), "class_accuracy": s.get("class_accuracy")})
    rows.sort(key=lambda r: (r["nfe_budget"], r["calls_per_step"], r["config"]))
    doc = {k: v for k, v in timings.items() if k != "rows"} | {"results": rows}
    atomic_write_bytes(folder / "results.json", (json.dumps(doc, indent=1) + "\n").encode())
    speed_text = f" images/s from a separate run of {speed_n} samples per row alone on the device." if speed_n else ""
    lines = [f"{timings['model']}, {timings['n']} samples per row, DPM-Solver++(2M), {timings['device_name']}, {timings['date']}.{speed_text}", "",
             "| NFE budget | configuration | steps | NFE | FID | class accuracy | images/s |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        fid = f"{r['fid']:.2f}" if r["fid"] is not None else "-"
        acc = f"{r['class_accuracy']:.3f}" if r["class_accuracy"] is not None else "-"
        lines.append(f"| {r['nfe_budget']} | {r['label']} | {r['steps']} | {r['nfe']:g} | {fid} | {acc} | {r['images_per_second']} |")
    figures = plots(folder, rows)
    drawn = grids(grids_from or folder, folder)
    if figures:
        lines += [""] + [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in figures]
    if drawn:
        source = f" (drawn from the samples of the run `{grids_from.name}`)" if grids_from else ""
        lines += ["", f"Sample grids, one row per class: grids/*.png, {len(drawn)} rows{source}."]
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(folder / "table.md", text.encode())
    return text


def _floats(p: argparse.ArgumentParser, name: str, default: list[float], text: str) -> None:
    p.add_argument(name, type=float, nargs="*", default=default, help=f"{text} (default: {default})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decoding.evals.guidance", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="sample every configuration, write .npz samples and timings.json")
    r.add_argument("--model", default="fashion-large")
    r.add_argument("--small", default="fashion-small", help="T-Stitch's small model ('' for no T-Stitch rows)")
    r.add_argument("--adapters", default=None, help="AGD adapter folder (none: no AGD rows)")
    r.add_argument("--nfe", type=int, nargs="+", default=[10, 20])
    r.add_argument("--n", type=int, default=10000)
    _floats(r, "--cfg-scales", [1.5, 2.0, 3.0], "CFG scales")
    _floats(r, "--rescale", [3.0, 0.7], "CFG scale and rescale phi of the rescale row")
    _floats(r, "--cfgpp", [0.6, 0.8, 1.0], "CFG++ lambdas")
    _floats(r, "--pag-scales", [1.0, 2.0], "PAG scales")
    _floats(r, "--cfg-pag", [1.5, 1.0], "CFG and PAG scales of the combined row")
    _floats(r, "--agd-scales", [1.5, 2.0, 3.0], "AGD scales")
    _floats(r, "--stitch", [0.2, 0.4, 0.6], "T-Stitch fractions")
    r.add_argument("--ref-scale", type=float, default=1.5, help="CFG scale of the T-Stitch rows")
    r.add_argument("--only", nargs="*", default=None, help="row names to run (e.g. cfg-1.5 agd-1.5); default all")
    r.add_argument("--batch-size", type=int, default=1000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--progress", action="store_true")
    t = sub.add_parser("report", help="join timings.json with FID scores into results.json and table.md")
    t.add_argument("folder", type=Path)
    t.add_argument("--scores", type=Path, default=None, help="JSON lines of python -m decoding.evals.fid samples")
    t.add_argument("--speed", type=Path, default=None, help="folder of a separate speed run whose images/s the table shows")
    t.add_argument("--grids-from", type=Path, default=None, help="draw the sample grids from this run's samples/ (default: FOLDER)")
    a = p.parse_args(argv)
    try:
        if a.cmd == "report":
            print(report(a.folder, a.scores, a.speed, a.grids_from))
            return 0
        pairs = [(a.rescale, "--rescale"), (a.cfg_pag, "--cfg-pag")]
        for v, flag in pairs:
            if len(v) != 2:
                raise ValueError(f"{flag} takes two numbers, got {v}")
        rows = configs(a.cfg_scales, tuple(a.rescale), a.cfgpp, a.pag_scales, tuple(a.cfg_pag), a.agd_scales, a.adapters,
                       a.stitch, a.small or None, a.ref_scale)
        unknown = sorted(set(a.only or []) - {r.name for r in rows})
        if unknown:
            raise ValueError(f"--only names no row {unknown}; rows: {', '.join(r.name for r in rows)}")
        command = "python -m decoding.evals.guidance " + " ".join(sys.argv[1:] if argv is None else argv)
        run(a.model, rows, a.nfe, a.n, a.out, a.device, a.seed, a.batch_size, a.only, a.progress, command)
    except (ValueError, FileNotFoundError, dc.OptionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
