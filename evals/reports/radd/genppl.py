"""RADD eval: generation perplexity of unconditional samples under SmolLM2, with and without the exact cache.

Two stages, so sampling can run on the GPU machine (torch only) and scoring where transformers is:

    # 1. sample (GPU: torch only; writes evals/reports/radd/samples.json)
    python evals/reports/radd/genppl.py sample --model models/radd-brown --device cuda
    # 2. score + report (CPU: sentencepiece + transformers; writes report.md, results.json, genppl.png)
    python evals/reports/radd/genppl.py score --model models/radd-brown

For each number of steps (32, 128, 512, 1024) and cache on/off, ``--samples`` unconditional
sequences of the model's context (128 tokens) are drawn with the tweedie sampler in batches of
``--batch`` at fixed seeds (the same seeds with and without the cache, so the samples must be
identical). Scoring detokenizes each sample with the model's SentencePiece tokenizer, re-tokenizes
the text with SmolLM2's tokenizer and computes ``exp(-sum log p / sum tokens)`` over all samples
(SmolLM2-135M-Instruct, its BOS as the only context), plus the mean unigram entropy of the samples
(a low value flags repetitive text that a low perplexity would hide). The same score on held-out
Brown windows of the same length is the data reference.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

from decoding.core.loop import decode  # noqa: E402
from decoding.nn.radd import RADDModel, load_radd  # noqa: E402
from decoding.processes.masked import Masked  # noqa: E402
from decoding.wrappers.cache import CachedModel  # noqa: E402


def _model_name(folder: str) -> str:
    """The model's name for titles: the folder's name, or its parent's for a trainer export (``out/NAME/model``)."""
    path = Path(folder)
    return path.parent.name if path.name == "model" else path.name


def sample_stage(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" and args.dtype == "auto" else getattr(torch, args.dtype, torch.float32)
    net = load_radd(args.model, device=device, dtype=dtype)
    cfg = json.loads((Path(args.model) / "config.json").read_text())
    length = int(cfg.get("seq_len", net.cfg.max_len))
    plain = RADDModel(net)
    cached = CachedModel(plain)
    decode(plain, Masked(mask_id=net.mask_id, length=length), 2, steps=4, generator=torch.Generator(device).manual_seed(0))
    runs = []
    for steps in args.steps:
        for use_cache in (False, True):
            model = cached if use_cache else plain
            rows, nfe, seconds = [], [], 0.0
            for i in range(0, args.samples, args.batch):
                b = min(args.batch, args.samples - i)
                gen = torch.Generator(device=device).manual_seed(args.seed + i)
                proc = Masked(mask_id=net.mask_id, length=length, sampler=args.sampler)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                res = decode(model, proc, b, steps=steps, generator=gen)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds += time.perf_counter() - t0
                rows += res.x.tolist()
                nfe += res.nfe.tolist()
            runs.append({"steps": steps, "cache": use_cache, "tokens": rows, "nfe": nfe,
                         "seconds_per_sample": seconds / args.samples})
            print(f"steps {steps:>5} cache {use_cache!s:>5}: NFE/sample {sum(nfe) / len(nfe):7.1f}  "
                  f"{1000 * seconds / args.samples:8.1f} ms/sample", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    out = {"model": str(args.model), "device": name, "torch": torch.__version__, "dtype": str(dtype),
           "sampler": args.sampler, "batch": args.batch, "samples": args.samples, "length": length, "runs": runs}
    Path(args.samples_file).parent.mkdir(parents=True, exist_ok=True)
    Path(args.samples_file).write_text(json.dumps(out) + "\n")
    print(f"wrote {args.samples_file}")


def _rel(path: str) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def _unigram_entropy(ids: list[int]) -> float:
    c = Counter(ids)
    n = len(ids)
    return -sum(k / n * math.log(k / n) for k in c.values())


def score_stage(args: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from decoding.adapters.smollm2 import smollm2_dir
    from decoding.data.text_corpus import fixed_windows, load_token_file
    from decoding.data.tokenizer import TextTokenizer

    data = json.loads(Path(args.samples_file).read_text())
    tok = TextTokenizer(Path(args.model) / "tokenizer.model")
    path = smollm2_dir()
    ref_tok = AutoTokenizer.from_pretrained(path)
    ref = AutoModelForCausalLM.from_pretrained(path).eval()
    prefix = ref_tok(ref_tok.bos_token or "").input_ids or [ref_tok.eos_token_id]

    cache_file = Path(args.score_cache) if args.score_cache else None
    memo: dict[str, list] = json.loads(cache_file.read_text()) if cache_file and cache_file.is_file() else {}
    # memo: text -> [NLL sum, SmolLM2 tokens]; identical texts (cache on/off) are scored once, and with
    # --score-cache the scores persist across runs (a deterministic function of the text)

    @torch.inference_mode()
    def text_nll(text: str) -> tuple[float, int]:
        if text not in memo:
            cont = ref_tok(text, add_special_tokens=False).input_ids
            if not cont:
                memo[text] = [0.0, 0]
            else:
                ids = torch.tensor([prefix + cont])
                lp = torch.log_softmax(ref(ids).logits[0, len(prefix) - 1 : -1].float(), -1)
                memo[text] = [-float(lp.gather(-1, ids[0, len(prefix) :, None]).sum()), len(cont)]
            if cache_file:
                cache_file.write_text(json.dumps(memo))
        return memo[text][0], memo[text][1]

    def nll(texts: list[str]) -> tuple[float, int, float]:
        """Token-weighted mean NLL over ``texts`` as (sum, tokens, standard error of the mean NLL per token)."""
        parts = [text_nll(t) for t in tqdm(texts, desc="SmolLM2", leave=False, mininterval=5.0)]
        total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
        k, ratio = len(parts), total / count
        # delta-method standard error of the ratio estimator sum(nll) / sum(tokens) over samples
        var = sum((a - ratio * n) ** 2 for a, n in parts) / max(k * (k - 1), 1)
        return total, count, math.sqrt(var) / (count / k)

    n_score = min(args.max_scored or data["samples"], data["samples"])
    results = []
    by_key = {(r["steps"], r["cache"]): r for r in data["runs"]}
    for r in data["runs"]:
        texts = [tok.decode(row) for row in r["tokens"]]
        total, count, se = nll(texts[:n_score])
        other = by_key.get((r["steps"], not r["cache"]))
        results.append({
            "steps": r["steps"], "cache": r["cache"], "gen_ppl": math.exp(total / count), "nll_se": se,
            "gen_ppl_lo": math.exp(total / count - 2 * se), "gen_ppl_hi": math.exp(total / count + 2 * se),
            "scored_samples": n_score, "smollm2_tokens": count,
            "nfe_per_sample": sum(r["nfe"]) / len(r["nfe"]), "ms_per_sample": 1000 * r["seconds_per_sample"],
            "unigram_entropy": sum(_unigram_entropy(row) for row in r["tokens"]) / len(r["tokens"]),
            "identical_to_other_cache_setting": other is not None and other["tokens"] == r["tokens"],
            "rows_identical_to_other_cache_setting": sum(a == b for a, b in zip(r["tokens"], other["tokens"], strict=True))
            if other is not None else None,
            "example": texts[0][:400],
        })
        print(f"steps {r['steps']:>5} cache {r['cache']!s:>5}: gen PPL {results[-1]['gen_ppl']:8.2f} "
              f"(+-2 SE {results[-1]['gen_ppl_lo']:.1f}..{results[-1]['gen_ppl_hi']:.1f}, {n_score} samples)", flush=True)
    streams, _ = load_token_file(args.data)
    windows = fixed_windows(streams["valid"], data["length"])[:n_score].tolist()
    total, count, se = nll([tok.decode(w) for w in windows])
    reference = {"gen_ppl": math.exp(total / count), "gen_ppl_lo": math.exp(total / count - 2 * se),
                 "gen_ppl_hi": math.exp(total / count + 2 * se), "windows": len(windows), "smollm2_tokens": count,
                 "unigram_entropy": sum(_unigram_entropy(w) for w in windows) / len(windows)}
    out = {**{k: v for k, v in data.items() if k != "runs"}, "date": args.date, "reference": reference, "results": results,
           "samples_file": _rel(args.samples_file), "scored_on": f"CPU (torch {torch.__version__}, {torch.get_num_threads()} thread(s))"}
    folder = Path(args.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    _plot(out, folder)
    _report(out, folder)
    print(f"wrote {folder / 'report.md'}")


def _plot(out: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for cache, style in ((False, "o-"), (True, "s--")):
        rs = [r for r in out["results"] if r["cache"] == cache]
        label = "cached" if cache else "uncached"
        xs = [r["steps"] * (1.06 if cache else 1.0) for r in rs]  # offset so the error bars do not overlap
        err = [[r["gen_ppl"] - r.get("gen_ppl_lo", r["gen_ppl"]) for r in rs], [r.get("gen_ppl_hi", r["gen_ppl"]) - r["gen_ppl"] for r in rs]]
        axes[0].errorbar(xs, [r["gen_ppl"] for r in rs], yerr=err, fmt=style, capsize=3, label=label)
        axes[1].plot([r["steps"] for r in rs], [r["nfe_per_sample"] for r in rs], style, label=label)
        axes[2].plot([r["steps"] for r in rs], [r["ms_per_sample"] for r in rs], style, label=label)
    axes[0].axhline(out["reference"]["gen_ppl"], color="gray", lw=0.8, label="Brown valid windows")
    scored = out["results"][0].get("scored_samples", out["samples"])
    titles = (f"gen. perplexity (SmolLM2), {scored} samples, +-2 SE", "NFE per sample", "wall ms per sample")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    fig.suptitle(f"RADD {_model_name(out['model'])}: {out['samples']} samples x {out['length']} tokens, sampler {out['sampler']}, "
                 f"sampled on {out['device']}")
    fig.tight_layout()
    fig.savefig(folder / "genppl.png", dpi=120)
    plt.close(fig)


def _report(out: dict, folder: Path) -> None:
    ref = out["reference"]
    scored = out["results"][0].get("scored_samples", out["samples"])
    lines = [
        f"# RADD generation perplexity ({_model_name(out['model'])})",
        "",
        f"Date {out['date']}. Sampling on {out['device']} (torch {out['torch']}, {out['dtype']}), "
        f"{out['samples']} unconditional samples of {out['length']} tokens per row, sampler `{out['sampler']}`, "
        f"batch {out['batch']}, same seeds with and without the cache. Scored by SmolLM2-135M-Instruct on "
        f"{out.get('scored_on', 'CPU')} on the detokenized, re-tokenized text of the first {scored} samples of each "
        "setting (token-weighted perplexity, BOS context; +-2 SE from the per-sample spread). NFE, time and "
        f"unigram entropy are over all {out['samples']} samples.",
        "",
        "| steps | cache | gen. PPL (+-2 SE) | NFE / sample | ms / sample | unigram entropy | samples identical to other setting |",
        "|---:|:---:|---:|---:|---:|---:|:---:|",
    ]
    for r in out["results"]:
        same = r.get("rows_identical_to_other_cache_setting")
        same = f"{same} / {out['samples']}" if same is not None else str(r["identical_to_other_cache_setting"])
        lines.append(f"| {r['steps']} | {'yes' if r['cache'] else 'no'} | {r['gen_ppl']:.1f} ({r['gen_ppl_lo']:.1f}-{r['gen_ppl_hi']:.1f}) | "
                     f"{r['nfe_per_sample']:.1f} | {r['ms_per_sample']:.1f} | {r['unigram_entropy']:.3f} | {same} |")
    lines += [
        "",
        f"Reference: {ref['windows']} held-out Brown windows of the same length: PPL {ref['gen_ppl']:.1f} "
        f"({ref['gen_ppl_lo']:.1f}-{ref['gen_ppl_hi']:.1f}), unigram entropy {ref['unigram_entropy']:.3f}.",
        "",
        f"NFE / sample: network evaluations per row as counted by the loop. ms / sample: wall time of a batch of "
        f"{out['batch']} on the sampling device divided by its rows.",
        "",
        *(["Cached and uncached samples differ at some settings: on CUDA in bf16 a row's logits can depend on the "
           "shape of the (sub-)batch it is computed in, so a near-tie draw can flip and the trajectory diverges "
           "(both are samples of the same model). On CPU in float32 they are bit-identical (tests/wrappers). "
           "See docs/perf/radd.md.", ""]
          if any(r.get("rows_identical_to_other_cache_setting", out["samples"]) < out["samples"] for r in out["results"]) else []),
        "![gen PPL, NFE and time vs steps](genppl.png)",
        "",
        "Commands:",
        "",
        "```",
        f"python evals/reports/radd/genppl.py sample --model {out['model']} --device cuda --samples {out['samples']} "
        f"--batch {out['batch']} --samples-file {out.get('samples_file', 'samples.json')}",
        f"python evals/reports/radd/genppl.py score --model {out['model']} --samples-file {out.get('samples_file', 'samples.json')}"
        + (f" --max-scored {scored}" if scored < out["samples"] else ""),
        "```",
        "",
        "First sample at each setting:",
        "",
    ]
    for r in out["results"]:
        if r["cache"]:
            lines += [f"- {r['steps']} steps: {r['example']!r}"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["sample", "score", "all"])
    ap.add_argument("--model", default=str(ROOT / "models" / "radd-brown"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--steps", type=int, nargs="+", default=[32, 128, 512, 1024])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sampler", default="tweedie")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples-file", default=str(HERE / "samples.json"))
    ap.add_argument("--data", default=str(ROOT / "data" / "brown-sp4k-tokens.safetensors"))
    ap.add_argument("--out-dir", default=str(HERE), help="where score writes report.md, results.json, genppl.png")
    ap.add_argument("--max-scored", type=int, default=None,
                    help="score only the first N samples of each setting (and N reference windows); default all")
    ap.add_argument("--score-cache", default=None, help="JSON file that keeps SmolLM2 scores per text across runs")
    ap.add_argument("--date", default="2026-11-25")
    args = ap.parse_args(argv)
    if args.stage in ("sample", "all"):
        sample_stage(args)
    if args.stage in ("score", "all"):
        score_stage(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
