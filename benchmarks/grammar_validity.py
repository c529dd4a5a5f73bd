"""How often grammar-constrained SmolLM2 output parses, with and without the budget guard.

    python benchmarks/grammar_validity.py                        # 3 prompts x 100 samples, 128 tokens, JSON
    python benchmarks/grammar_validity.py --samples 20 --max-new-tokens 64 --prompts 1
    python benchmarks/grammar_validity.py --quick                # seconds, for the test suite

For each prompt both sides draw the same number of samples with the same seed and settings
(``decoding.generate`` on the embedded SmolLM2-135M-Instruct, chat template, plain
sampling): ``guard`` passes the compiled grammar (the last tokens before ``--max-new-tokens`` are
restricted to those after which the text can still be completed, see
:class:`decoding.grammar.budget.BudgetGuard`); ``no guard`` is plain constrained decoding, where a
sample that reaches the budget stops wherever it is. Reported per side: samples that
``json.loads`` accepts (or that lark parses, for other grammars), finish reasons, samples the
guard restricted, new tokens per sample, and wall time per token.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

PROMPTS = [
    "Describe a person as a JSON object with name, age and hobbies.",
    "Give a JSON list of three fruits with their colours.",
    "Return the current weather in Paris as JSON.",
    "Write a JSON config for a web server.",
    "List the planets of the solar system as a JSON array.",
]


def parses(text: str, grammar_name: str, lark_parser) -> bool:
    try:
        if grammar_name in ("json", "json_rfc"):
            json.loads(text)
        else:
            lark_parser.parse(text)
        return True
    except Exception:  # noqa: BLE001  (any parse error means "does not parse")
        return False


def run(args: argparse.Namespace) -> dict:
    import decoding as dc
    from decoding.api.causal_lm import compiled_grammar

    torch.set_num_threads(args.threads)
    lm = dc.load("smollm2", device=args.device)
    g, _ = compiled_grammar(lm, args.grammar, None)
    sides = {"guard": True, "no guard": False}
    rows = []
    for k, prompt in enumerate(PROMPTS[: args.prompts]):
        for side, close in sides.items():
            t0 = time.perf_counter()
            res = dc.generate(lm, prompt, n=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed + k,
                              batch_size=args.batch_size, grammar=g, budget_close=close)
            dt = time.perf_counter() - t0
            ok = [parses(text, args.grammar, g.lark) for text in res.text]
            reasons: dict[str, int] = {}
            for r in res.finish_reason:
                reasons[r] = reasons.get(r, 0) + 1
            tokens = sum(map(len, res.tokens))
            row = {
                "prompt": prompt, "side": side, "samples": len(res), "parse": sum(ok),
                "finish": reasons, "limited": sum(res.info["budget_limited"]),
                "tokens_per_sample": tokens / len(res), "ms_per_token": 1e3 * dt / max(tokens, 1),
                "bad_examples": [t[-120:] for t, o in zip(res.text, ok, strict=True) if not o][:3],
            }
            rows.append(row)
            print(f"[{side:8s}] {prompt[:48]!r}: parse {row['parse']}/{row['samples']}, finish {reasons}, "
                  f"limited {row['limited']}, {row['tokens_per_sample']:.1f} tok/sample, "
                  f"{row['ms_per_token']:.1f} ms/tok", flush=True)
    total = {}
    for side in sides:
        mine = [r for r in rows if r["side"] == side]
        total[side] = {"parse": sum(r["parse"] for r in mine), "samples": sum(r["samples"] for r in mine),
                       "ms_per_token": sum(r["ms_per_token"] for r in mine) / len(mine)}
        print(f"{side}: {total[side]['parse']}/{total[side]['samples']} parse")
    ratio = total["guard"]["ms_per_token"] / total["no guard"]["ms_per_token"]
    print(f"time per token guard / no guard: {ratio:.3f}")
    return {
        "benchmark": "grammar_validity", "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "device": args.device, "threads": args.threads, "grammar": args.grammar, "max_new_tokens": args.max_new_tokens,
        "seed": args.seed, "rows": rows, "total": total, "time_ratio_guard_over_plain": ratio,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grammar", default="json")
    ap.add_argument("--prompts", type=int, default=3, help=f"how many of the {len(PROMPTS)} built-in prompts")
    ap.add_argument("--samples", type=int, default=100, help="samples per prompt and side")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="1 prompt, 2 samples, 12 tokens")
    args = ap.parse_args(argv)
    if args.quick:
        args.prompts, args.samples, args.max_new_tokens = 1, 2, 12
    out = run(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(args.out)
    return out


if __name__ == "__main__":
    main()
