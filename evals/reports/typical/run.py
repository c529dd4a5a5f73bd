"""Locally typical sampling vs nucleus and top-k on SmolLM2-135M-Instruct (issue 3, item 5).

    python evals/reports/typical/run.py [--max-new-tokens 128] [--out evals/reports/typical]

For each decoding setting, one sample per prompt for the 50 story prompts in ``prompts.txt``
(chat template, seed 0), then per setting:

- ``rep_4``: seq-rep-4 (Welleck et al., arXiv 1908.04319), ``1 - unique 4-grams / 4-grams`` of
  each sample's tokens, averaged over samples (0 = no repeated 4-gram);
- ``distinct_n`` (Li et al., arXiv 1510.03055): unique n-grams / n-grams over all samples, n = 1, 2, 3;
- ``ppl``: perplexity of the generated tokens under the model's own *unprocessed* distribution
  (``exp`` of the mean negative log-probability per token, EOS included), recorded during
  generation from the raw logits (a wrapper model), so no re-scoring pass is needed;
- mean length and the share of samples that ended with EOS.

Writes ``results.json``, ``samples.jsonl``, ``report.png`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import decoding as dc  # noqa: E402
from decoding.adapters.text_lm import TextLM  # noqa: E402
from decoding.core.types import Prediction, State  # noqa: E402

HERE = Path(__file__).resolve().parent
SETTINGS: dict[str, dict] = {
    "typical 0.2": dict(typical=0.2),
    "typical 0.9": dict(typical=0.9),
    "nucleus 0.9": dict(top_p=0.9),
    "top-k 40": dict(top_k=40),
    "ancestral (reference)": dict(),
    "greedy (reference)": dict(greedy=True),
}


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def seq_rep(tokens: Sequence[int], n: int = 4) -> float | None:
    """``1 - unique n-grams / n-grams`` of one sequence (None when it has no n-gram)."""
    g = ngrams(tokens, n)
    return 1.0 - len(set(g)) / len(g) if g else None


def distinct(samples: Sequence[Sequence[int]], n: int) -> float:
    """Unique n-grams / n-grams over all samples."""
    g = [x for s in samples for x in ngrams(s, n)]
    return len(set(g)) / len(g) if g else float("nan")


def bootstrap_ci(values: Sequence[float], seed: int = 0, rounds: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values`` (resampling samples)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.tensor(values, dtype=torch.float64)
    idx = torch.randint(0, len(values), (rounds, len(values)), generator=g)
    means = v[idx].mean(-1).sort().values
    return float(means[int(0.025 * rounds)]), float(means[int(0.975 * rounds) - 1])


class RawLogprobs:
    """Wraps an engine model and records ``log p(emitted token)`` under its unprocessed logits."""

    def __init__(self, model) -> None:
        self.model = model
        self.last: torch.Tensor | None = None
        self.logprobs: list[list[float]] = []

    def __call__(self, state: State) -> Prediction:
        pred = self.model(state)
        self.last = torch.log_softmax(pred.logits.float(), dim=-1)
        return pred

    def record(self, i: int, state: State) -> None:
        if i == 0:
            self.logprobs = [[] for _ in range(state.batch_size)]
        tok = state.emitted
        lp = self.last.gather(1, tok.clamp(min=0)[:, None])[:, 0].tolist()
        for r, (t, v) in enumerate(zip(tok.tolist(), lp, strict=True)):
            if t >= 0:
                self.logprobs[r].append(v)


def run_setting(lm: TextLM, prompts: list[str], kw: dict, max_new: int, seed: int) -> dict:
    if hasattr(lm.model, "capacity"):  # static KV cache sized for this run (attention reads every slot)
        lm.model.capacity = lm.encode(prompts)["input_ids"].shape[1] + max_new + 1
    wrapped = RawLogprobs(lm.model)
    view = TextLM(**{**lm.__dict__, "model": wrapped})
    t = time.perf_counter()
    greedy = kw.get("greedy", False)
    sampling = dc.Sampling(**{k: v for k, v in kw.items() if k != "greedy"}, greedy=greedy)
    out = dc.generate(view, prompts, max_new_tokens=max_new, seed=seed, on_step=wrapped.record, sampling=sampling)
    seconds = time.perf_counter() - t
    tokens = out.tokens
    nll = [-v for lps in wrapped.logprobs for v in lps]
    reps = [x for x in (seq_rep(s, 4) for s in tokens) if x is not None]
    return {
        "settings": kw,
        "rep_4": sum(reps) / len(reps),
        "rep_4_ci95": bootstrap_ci(reps, seed=seed),
        "samples_with_a_repeated_4gram": sum(x > 0 for x in reps),
        "distinct_1": distinct(tokens, 1),
        "distinct_2": distinct(tokens, 2),
        "distinct_3": distinct(tokens, 3),
        "ppl": math.exp(sum(nll) / len(nll)),
        "mean_tokens": sum(len(s) for s in tokens) / len(tokens),
        "eos_share": sum(r == "eos" for r in out.finish_reason) / len(out),
        "seconds": seconds,
        "samples": [{"prompt": prompts[i], "text": text, "n_tokens": len(ids), "finish": reason,
                     "rep_4": seq_rep(ids, 4), "tokens": ids}
                    for i, text, ids, reason in zip(out.prompt_index, out.text, out.tokens, out.finish_reason, strict=True)],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [("rep_4", "seq-rep-4 (lower: fewer repeats)"), ("distinct_2", "distinct-2 (higher: more diverse)"),
              ("ppl", "perplexity under the model")]
    for ax, (key, title) in zip(axes, panels, strict=True):
        vals = [results[n][key] for n in names]
        ax.bar(range(len(names)), vals, color=["C0", "C0", "C1", "C2", "C7", "C7"][: len(names)])
        ax.set_xticks(range(len(names)), [n.replace(" (reference)", "\n(ref)") for n in names], rotation=35,
                      ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key == "ppl":
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, results: dict, meta: dict) -> None:
    lines = [
        "# Locally typical sampling vs nucleus and top-k on SmolLM2-135M-Instruct",
        "",
        f"Measured {meta['date']} on {meta['hardware']} (torch {meta['torch']}), {meta['prompts']} story prompts "
        f"(`prompts.txt`, chat template), one sample each, up to {meta['max_new_tokens']} new tokens, seed {meta['seed']}, "
        f"{meta['engine']} engine, float32. Total {meta['seconds']:.0f} s.",
        "",
        "Command:",
        "",
        f"    {meta['command']}",
        "",
        "| setting | seq-rep-4 (95% CI) | samples with a repeated 4-gram | distinct-1 | distinct-2 | distinct-3 "
        "| perplexity | mean tokens | ended by EOS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lo, hi = r["rep_4_ci95"]
        lines.append(f"| {name} | {r['rep_4']:.4f} ({lo:.4f}-{hi:.4f}) | {r['samples_with_a_repeated_4gram']}/{meta['prompts']} "
                     f"| {r['distinct_1']:.3f} | {r['distinct_2']:.3f} | "
                     f"{r['distinct_3']:.3f} | {r['ppl']:.2f} | {r['mean_tokens']:.1f} | {r['eos_share']:.0%} |")
    lines += [
        "",
        "![metrics](report.png)",
        "",
        "Definitions: seq-rep-4 = mean over samples of `1 - unique 4-grams / 4-grams` (token ids);",
        "distinct-n = unique n-grams / n-grams over all 50 samples of a setting; perplexity = `exp` of the mean",
        "negative log-probability of the generated tokens (EOS included) under the model's unprocessed",
        "next-token distribution. References: ancestral = plain sampling at temperature 1, greedy = argmax.",
        "The interval is a percentile bootstrap over the samples. Every setting uses seed 0, so the settings",
        "share their random numbers (the exponential race): where two truncations both keep the token the",
        "race picks, they emit the same token, which makes typical 0.9 and nucleus 0.9 close by construction.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines) + meta.get("findings", ""))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--prompts", type=Path, default=HERE / "prompts.txt")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts (smoke tests)")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), help="subset of: " + "; ".join(SETTINGS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    prompts = [x for x in args.prompts.read_text().splitlines() if x.strip()][: args.limit]
    lm = dc.load(args.model, device=args.device)
    t0 = time.perf_counter()
    results = {}
    for name in args.settings:
        results[name] = run_setting(lm, prompts, SETTINGS[name], args.max_new_tokens, args.seed)
        r = results[name]
        print(f"{name:<24} rep-4 {r['rep_4']:.3f}  distinct-2 {r['distinct_2']:.3f}  ppl {r['ppl']:.2f}  "
              f"len {r['mean_tokens']:.1f}  ({r['seconds']:.0f} s)", flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"), "hardware": f"CPU {platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
        "seed": args.seed, "engine": lm.engine, "seconds": time.perf_counter() - t0,
        "command": "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:]) if argv is None else
        "main(" + repr(argv) + ")",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "samples"} for k, v in results.items()}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": summary}, indent=2))
    with (args.out / "samples.jsonl").open("w") as f:
        for name, r in results.items():
            for s in r["samples"]:
                f.write(json.dumps({"setting": name, **s}, ensure_ascii=False) + "\n")
    plot(summary, args.out / "report.png")
    findings = HERE / "findings.md"
    meta["findings"] = findings.read_text() if findings.is_file() and args.out == HERE else ""
    write_report(args.out, summary, meta)
    return summary


if __name__ == "__main__":
    main()
