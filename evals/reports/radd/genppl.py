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

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

from decoding.core.loop import decode  # noqa: E402
from decoding.nn.radd import RADDModel, load_radd  # noqa: E402
from decoding.processes.masked import Masked  # noqa: E402
from decoding.wrappers.cache import CachedModel  # noqa: E402


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

    @torch.inference_mode()
    def nll(texts: list[str]) -> tuple[float, int]:
        total, count = 0.0, 0
        for text in texts:
            cont = ref_tok(text, add_special_tokens=False).input_ids
            if not cont:
                continue
            ids = torch.tensor([prefix + cont])
            lp = torch.log_softmax(ref(ids).logits[0, len(prefix) - 1 : -1].float(), -1)
            total -= float(lp.gather(-1, ids[0, len(prefix) :, None]).sum())
            count += len(cont)
        return total, count

    results = []
    by_key = {(r["steps"], r["cache"]): r for r in data["runs"]}
    for r in data["runs"]:
        texts = [tok.decode(row) for row in r["tokens"]]
        total, count = nll(texts)
        other = by_key.get((r["steps"], not r["cache"]))
        results.append({
            "steps": r["steps"], "cache": r["cache"], "gen_ppl": math.exp(total / count), "smollm2_tokens": count,
            "nfe_per_sample": sum(r["nfe"]) / len(r["nfe"]), "ms_per_sample": 1000 * r["seconds_per_sample"],
            "unigram_entropy": sum(_unigram_entropy(row) for row in r["tokens"]) / len(r["tokens"]),
            "identical_to_other_cache_setting": other is not None and other["tokens"] == r["tokens"],
            "example": texts[0][:400],
        })
        print(f"steps {r['steps']:>5} cache {r['cache']!s:>5}: gen PPL {results[-1]['gen_ppl']:8.2f}", flush=True)
    streams, _ = load_token_file(args.data)
    windows = fixed_windows(streams["valid"], data["length"])[: data["samples"]].tolist()
    total, count = nll([tok.decode(w) for w in windows])
    reference = {"gen_ppl": math.exp(total / count), "windows": len(windows), "smollm2_tokens": count,
                 "unigram_entropy": sum(_unigram_entropy(w) for w in windows) / len(windows)}
    out = {**{k: v for k, v in data.items() if k != "runs"}, "date": args.date, "reference": reference, "results": results}
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
        axes[0].plot([r["steps"] for r in rs], [r["gen_ppl"] for r in rs], style, label=label)
        axes[1].plot([r["steps"] for r in rs], [r["nfe_per_sample"] for r in rs], style, label=label)
        axes[2].plot([r["steps"] for r in rs], [r["ms_per_sample"] for r in rs], style, label=label)
    axes[0].axhline(out["reference"]["gen_ppl"], color="gray", lw=0.8, label="Brown valid windows")
    for ax, title in zip(axes, ("gen. perplexity (SmolLM2)", "NFE per sample", "wall ms per sample"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    fig.suptitle(f"RADD {Path(out['model']).name}: {out['samples']} samples x {out['length']} tokens, sampler {out['sampler']}")
    fig.tight_layout()
    fig.savefig(folder / "genppl.png", dpi=120)
    plt.close(fig)


def _report(out: dict, folder: Path) -> None:
    ref = out["reference"]
    lines = [
        f"# RADD generation perplexity ({Path(out['model']).name})",
        "",
        f"Date {out['date']}. Sampling on {out['device']} (torch {out['torch']}, {out['dtype']}), "
        f"{out['samples']} unconditional samples of {out['length']} tokens per row, sampler `{out['sampler']}`, "
        f"batch {out['batch']}, same seeds with and without the cache. Scored by SmolLM2-135M-Instruct on "
        "the detokenized, re-tokenized text (token-weighted perplexity over all samples, BOS context).",
        "",
        "| steps | cache | gen. PPL | NFE / sample | ms / sample | unigram entropy | same samples as other setting |",
        "|---:|:---:|---:|---:|---:|---:|:---:|",
    ]
    for r in out["results"]:
        lines.append(f"| {r['steps']} | {'yes' if r['cache'] else 'no'} | {r['gen_ppl']:.2f} | {r['nfe_per_sample']:.1f} | "
                     f"{r['ms_per_sample']:.1f} | {r['unigram_entropy']:.3f} | {r['identical_to_other_cache_setting']} |")
    lines += [
        "",
        f"Reference: {ref['windows']} held-out Brown windows of the same length: PPL {ref['gen_ppl']:.2f}, "
        f"unigram entropy {ref['unigram_entropy']:.3f}.",
        "",
        "![gen PPL, NFE and time vs steps](genppl.png)",
        "",
        "Commands:",
        "",
        "```",
        f"python evals/reports/radd/genppl.py sample --model {out['model']} --device cuda --samples {out['samples']} --batch {out['batch']}",
        f"python evals/reports/radd/genppl.py score --model {out['model']}",
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
    ap.add_argument("--date", default="2026-11-25")
    args = ap.parse_args(argv)
    if args.stage in ("sample", "all"):
        sample_stage(args)
    if args.stage in ("score", "all"):
        score_stage(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
