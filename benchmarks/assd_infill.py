"""ASSD vs sequential any-order sampling when infilling 25 / 50 / 95 % masked sequences.

Both samplers draw from the same joint (the AS-ARM's chain along the left-to-right order over the masked
positions; arXiv 2504.20456), so they differ only in model calls (NFE) and wall time. Quality is checked
with the generation perplexity of the filled texts under SmolLM2-135M (detokenized, retokenized): equal
within the error bars. Sequences: the first ``--num`` windows of the held-out split; masks: a uniformly
random subset of positions per sequence (fixed seed), the same for every method.

CPU::

    python benchmarks/assd_infill.py --model models/as-arm-brown --num 32 --device cpu --threads 2

GPU (no transformers there: skip the perplexity and score the saved texts on CPU afterwards)::

    python benchmarks/assd_infill.py --model models/as-arm-brown --num 64 --device cuda --no-ppl --out out/assd-h100.json
    python benchmarks/assd_infill.py --ppl-from out/assd-h100.json        # on a machine with transformers
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from decoding.core.loop import decode  # noqa: E402
from decoding.data.text_corpus import fixed_windows, load_token_file  # noqa: E402
from decoding.processes.any_order import AnyOrder, infill_steps  # noqa: E402
from decoding.processes.assd import ASSD  # noqa: E402


def masks_for(windows: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """``(N, L)`` bool: ``round(rate * L)`` uniformly random masked positions per row (at least one)."""
    n, length = windows.shape
    g = torch.Generator().manual_seed(seed)
    count = max(1, min(length, round(rate * length)))
    keys = torch.rand(n, length, generator=g)
    return torch.argsort(torch.argsort(keys, 1), 1) < count


def run_method(model, process, windows, targets, batch: int, seed: int, device: str) -> dict[str, Any]:  # noqa: ANN001
    """Infill all rows in batches of ``batch``; NFE per row, wall time, filled ids."""
    nfe, xs, secs, drafted, accepted = [], [], 0.0, 0.0, 0.0
    for i in range(0, windows.shape[0], batch):
        ids = windows[i : i + batch].to(device)
        tg = targets[i : i + batch].to(device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        prompt = {"input_ids": ids, "targets": tg}
        res = decode(model, process, prompt, steps=infill_steps(prompt), seed=seed + i)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        secs += time.perf_counter() - t0
        nfe.append(res.nfe)
        if "drafted" in res.state.memory:
            drafted += float(torch.as_tensor(res.state.memory["drafted"]).sum())
            accepted += float(torch.as_tensor(res.state.memory["accepted"]).sum())
        xs.append(res.x.cpu())
        assert torch.equal(res.x.cpu()[~tg.cpu()], ids.cpu()[~tg.cpu()]), "visible tokens changed"
    nfe_t = torch.cat(nfe)
    gen = int(targets.sum())
    return {"nfe_total": float(nfe_t.sum()), "generated": gen, "nfe_per_token": float(nfe_t.sum()) / gen,
            "max_nfe_over_tokens": float((nfe_t / targets.sum(1)).max()), "seconds": secs,
            "acceptance": accepted / drafted if drafted else None, "x": torch.cat(xs)}


@functools.lru_cache(maxsize=2)
def _smollm2(device: str):  # noqa: ANN202
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from decoding.adapters.smollm2 import smollm2_dir

    path = smollm2_dir()
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()


def smollm2_nll(texts: list[str], device: str = "cpu") -> list[float]:
    """Mean negative log-likelihood (nats / SmolLM2 token) of each text under SmolLM2-135M (after a BOS)."""
    tok, lm = _smollm2(device)
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    out = []
    for text in texts:
        ids = torch.cat([torch.tensor([[start]]), tok(text, return_tensors="pt").input_ids], 1).to(device)
        with torch.no_grad():
            logits = lm(ids).logits[0, :-1].float()
        out.append(float(torch.nn.functional.cross_entropy(logits, ids[0, 1:])))
    return out


def _mean_se(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    var = sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1)
    return m, math.sqrt(var / len(v))


def add_ppl(report: dict[str, Any], device: str) -> None:
    """Score every method's texts (and the originals) under SmolLM2; fills ``ppl`` fields in place."""
    for rate in report["rates"]:
        rows = report["results"][rate]
        for r in rows.values():
            nll = smollm2_nll(r["texts"], device)
            m, se = _mean_se(nll)
            r["smollm2_nll"] = m
            r["smollm2_nll_se"] = se
            r["smollm2_ppl"] = math.exp(m)


def print_table(report: dict[str, Any]) -> None:
    print(f"\nASSD vs sequential any-order infilling ({report['model']}, {report['device_name']}, {report['num']} sequences of "
          f"{report['seq_len']} tokens, batch {report['batch']})")
    print(f"{'masked':>7} {'method':>22} {'NFE/token':>10} {'seconds':>8} {'time vs seq':>11} {'accept':>7} {'SmolLM2 ppl':>17} {'z vs seq':>8}")
    for rate in report["rates"]:
        rows = report["results"][rate]
        base = rows["sequential"]
        for name, r in rows.items():
            ppl, z = "-", "-"
            if "smollm2_ppl" in r:
                ppl = f"{r['smollm2_ppl']:.1f} (+-{2 * r['smollm2_nll_se'] * r['smollm2_ppl']:.1f})"
                if r is not base:  # Welch z of the mean NLL difference; |z| < 2: no detectable difference
                    z = f"{(r['smollm2_nll'] - base['smollm2_nll']) / math.hypot(r['smollm2_nll_se'], base['smollm2_nll_se']):+.2f}"
            acc = f"{r['acceptance']:.2f}" if r.get("acceptance") is not None else "-"
            print(f"{float(rate):>7.0%} {name:>22} {r['nfe_per_token']:>10.3f} {r['seconds']:>8.2f} "
                  f"{r['seconds'] / base['seconds']:>11.3f} {acc:>7} {ppl:>17} {z:>8}")
        if "original_ppl" in report and rate in report["original_ppl"]:
            print(f"{'':>7} {'original text':>22} {'':>10} {'':>8} {'':>11} {'':>7} {report['original_ppl'][rate]:>17.1f}")


def plot(report: dict[str, Any], path: str) -> None:
    """Bars of NFE per generated token and of wall time relative to sequential, per masking rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = report["rates"]
    names = list(report["results"][rates[0]])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + j * width for i in range(len(rates))]
        rows = [report["results"][r] for r in rates]
        axes[0].bar(xs, [row[name]["nfe_per_token"] for row in rows], width, label=name)
        axes[1].bar(xs, [row[name]["seconds"] / row["sequential"]["seconds"] for row in rows], width, label=name)
    for ax, title in zip(axes, ("NFE per generated token", "wall time / sequential"), strict=True):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rates))], [f"{float(r):.0%} masked" for r in rates])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ASSD vs sequential any-order infilling ({report['device_name']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/as-arm-brown")
    ap.add_argument("--data", default="data/brown-sp4k-tokens.safetensors")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.25, 0.5, 0.95])
    ap.add_argument("--k", type=int, nargs="+", default=[4, 8], help="ASSD k values (tokens per call at most)")
    ap.add_argument("--adaptive", action="store_true", help="also run adaptive ASSD (k from the first --k, k_max 4x)")
    ap.add_argument("--num", type=int, default=32, help="sequences per masking rate")
    ap.add_argument("--batch", type=int, default=1, help="rows per decode call (1: per-sequence latency)")
    ap.add_argument("--order", default="left_to_right", choices=["left_to_right", "random"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-ppl", action="store_true", help="skip SmolLM2 perplexity (no transformers on the machine)")
    ap.add_argument("--ppl-device", default="cpu")
    ap.add_argument("--ppl-from", default=None, help="score the texts of a saved report and print its table")
    ap.add_argument("--out", default=None, help="write the report (with texts) as JSON")
    ap.add_argument("--plot", default=None, help="write a PNG of NFE per token and relative wall time")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ppl_from:
        report = json.loads(Path(a.ppl_from).read_text())
        add_ppl(report, a.ppl_device)
        report["original_ppl"] = {r: math.exp(_mean_se(smollm2_nll(report["originals"][r], a.ppl_device))[0]) for r in report["rates"]}
        Path(a.out or a.ppl_from).write_text(json.dumps(report, indent=1))
        print_table(report)
        if a.plot:
            plot(report, a.plot)
        return 0
    import decoding as dc

    arm = dc.load(a.model, device=a.device)
    model, tok, seq_len = arm.model, arm.tokenizer, arm.context
    streams, _ = load_token_file(a.data)
    windows = fixed_windows(streams["valid"], seq_len)[: a.num]
    methods: list[tuple[str, Any]] = [("sequential", AnyOrder(order=a.order))]
    methods += [(f"assd k={k}", ASSD(k=k, order=a.order)) for k in a.k]
    if a.adaptive:
        methods.append((f"assd adaptive {a.k[0]}..{4 * a.k[0]}", ASSD(k=a.k[0], adaptive=True, k_max=4 * a.k[0], order=a.order)))
    dev_name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    report: dict[str, Any] = {"model": a.model, "device_name": dev_name, "num": a.num, "seq_len": seq_len, "batch": a.batch,
                              "rates": [str(r) for r in a.rates], "results": {}, "originals": {}, "torch": torch.__version__}
    # warm-up (allocator, kernels)
    run_method(model, AnyOrder(), windows[:1], masks_for(windows[:1], 0.1, 0), 1, 0, a.device)
    for rate in a.rates:
        targets = masks_for(windows, rate, a.seed)
        report["originals"][str(rate)] = [tok.decode(w.tolist()) for w in windows]
        rows = {}
        for name, proc in methods:
            r = run_method(model, proc, windows, targets, a.batch, a.seed + 1000, a.device)
            r["texts"] = [tok.decode(x.tolist()) for x in r.pop("x")]
            rows[name] = r
            print(f"masked {rate:.0%} {name}: NFE/token {r['nfe_per_token']:.3f}, {r['seconds']:.2f} s", flush=True)
        report["results"][str(rate)] = rows
    if not a.no_ppl:
        add_ppl(report, a.ppl_device)
        report["original_ppl"] = {str(r): math.exp(_mean_se(smollm2_nll(report["originals"][str(r)], a.ppl_device))[0]) for r in a.rates}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1))
    print_table(report)
    if a.plot:
        plot(report, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
