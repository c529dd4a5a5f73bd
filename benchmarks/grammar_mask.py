"""Per-token grammar mask time: ours vs llguidance, xgrammar, outlines-core and transformers-cfg.

Replays 20 realistic JSON documents and 20 arithmetic expressions, tokenized with SmolLM2's
tokenizer (49,152 tokens), through each engine: at every position the engine computes the
next-token mask (timed) and must allow the document's own next token (and EOS at the end).
Prints compile time and per-token mask median / p90 / p99 / max in microseconds, and the ratio
of each peer to ours, all measured in the same run.

    python benchmarks/grammar_mask.py                    # peers from the cache folder if installed
    python benchmarks/grammar_mask.py --install-peers    # pip install --target the peers first
    python benchmarks/grammar_mask.py --quick            # 4 documents per grammar, peers capped
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grammar_data import arithmetic_expressions, json_documents  # noqa: E402
from grammar_peers import (  # noqa: E402
    PeerRun,
    ensure_peers,
    run_llguidance,
    run_outlines,
    run_transformers_cfg,
    run_xgrammar,
)

from decoding.cache import cache_dir  # noqa: E402
from decoding.grammar import compile_grammar  # noqa: E402
from decoding.grammar.loader import GRAMMARS_DIR  # noqa: E402
from decoding.grammar.tokens import token_matrix  # noqa: E402
from decoding.tokenizers import vocabulary  # noqa: E402


def stats(times_us: list[float]) -> dict[str, float]:
    a = np.asarray(times_us, dtype=np.float64)
    if not a.size:
        return {k: float("nan") for k in ("median", "p90", "p99", "max")}
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def run_ours(tok, grammar: str, docs: list[list[int]], warm_seconds: float) -> tuple[PeerRun, list[float]]:
    """Our constraint: compile (including warm-up), then replay; also returns per-mask CPU times."""
    run = PeerRun("decoding (ours)", grammar)
    vocab = vocabulary(tok)
    token_matrix(vocab)  # tokenizer preparation, shared by all grammars (timed separately)
    start, cpu0 = time.perf_counter(), time.thread_time()
    g = compile_grammar(grammar, vocab, warm_seconds=warm_seconds)
    run.compile_s = time.perf_counter() - start
    run.error = f"compile CPU {time.thread_time() - cpu0:.2f} s; cache {g.stats}"
    cpu: list[float] = []
    for ids in docs:
        m = g.matcher()
        run.docs += 1
        for t in ids:
            w0, c0 = time.perf_counter(), time.thread_time()
            mask = m.mask()
            c1, w1 = time.thread_time(), time.perf_counter()
            run.times_us.append((w1 - w0) * 1e6)
            cpu.append((c1 - c0) * 1e6)
            if not mask[t]:
                run.refused += 1
                break
            m.accept_token(t)
    run.error = run.error.split("; cache")[0] + f"; masks: {g.stats}"
    return run, cpu


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 documents per grammar, peers capped (for tests)")
    ap.add_argument(
        "--peers", default="llguidance,xgrammar,outlines,transformers-cfg", help="comma list, or 'none'"
    )
    ap.add_argument("--peers-dir", type=Path, default=None, help="where peers are pip-installed (--target)")
    ap.add_argument(
        "--install-peers", action="store_true", help="pip install the peers into --peers-dir first"
    )
    ap.add_argument(
        "--tcfg-tokens", type=int, default=400, help="tokens replayed through transformers-cfg (slow)"
    )
    ap.add_argument(
        "--warm-seconds", type=float, default=1.5, help="our compile-time warm-up budget (CPU seconds)"
    )
    ap.add_argument("--json-out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from decoding.adapters.smollm2 import smollm2_dir

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    eos = int(tok.eos_token_id)
    start = time.perf_counter()
    vocab = vocabulary(tok)
    token_matrix(vocab)
    prep_s = time.perf_counter() - start
    n = 4 if args.quick else 20
    texts = {"json": json_documents(n), "arithmetic": arithmetic_expressions(n)}
    docs = {g: [tok.encode(t) + [eos] for t in ts] for g, ts in texts.items()}
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",")]
    notes = []
    if peers:
        notes += ensure_peers(args.peers_dir or cache_dir("grammar-peers"), args.install_peers)

    runs: list[PeerRun] = []
    ours_cpu: dict[str, list[float]] = {}
    cap = 60 if args.quick else None  # peer tokens per grammar in --quick mode
    for grammar in ("json", "arithmetic"):
        run, cpu = run_ours(tok, grammar, docs[grammar], args.warm_seconds)
        runs.append(run)
        ours_cpu[grammar] = cpu
        lark_text = (GRAMMARS_DIR / f"{grammar}.lark").read_text()
        jobs = {
            "llguidance": lambda g=grammar, lt=lark_text: run_llguidance(tok, g, lt, docs[g], eos, cap),
            "xgrammar": lambda g=grammar, lt=lark_text: [
                *([run_xgrammar(tok, g, None, docs[g], eos, cap)] if g == "json" else []),
                run_xgrammar(tok, g, lt, docs[g], eos, cap),
            ],
            "outlines": lambda g=grammar: run_outlines(tok, g, texts[g], docs[g], eos, vocab.tokens, cap),
            "transformers-cfg": lambda g=grammar: run_transformers_cfg(
                tok, g, docs[g], eos, min(args.tcfg_tokens, cap or args.tcfg_tokens)
            ),
        }
        for peer in peers:
            if peer not in jobs:
                raise SystemExit(f"unknown peer {peer!r}; choose from {', '.join(jobs)}")
            try:
                out = jobs[peer]()
                runs.extend(out if isinstance(out, list) else [out])
            except Exception as e:  # noqa: BLE001 - a peer that fails is recorded, not fatal
                runs.append(PeerRun(peer, grammar, error=f"{type(e).__name__}: {str(e)[:300]}"))

    report = {"tokenizer": "SmolLM2 (49,152 tokens)", "tokenizer_prep_s": prep_s, "notes": notes, "rows": []}
    print(f"tokenizer preparation (ours, once per tokenizer): {prep_s:.2f} s")
    for grammar in ("json", "arithmetic"):
        ours = next(r for r in runs if r.name == "decoding (ours)" and r.grammar == grammar)
        base = stats(ours.times_us)
        cpu = stats(ours_cpu[grammar])
        print(f"\n## {grammar}: {len(docs[grammar])} documents, {sum(map(len, docs[grammar]))} tokens")
        print(
            f"ours, CPU time per mask (thread_time): median {cpu['median']:.1f} us, p99 {cpu['p99']:.1f} us, max {cpu['max']:.1f} us"
        )
        print(
            "| engine | compile s | masks | median us | p90 us | p99 us | max us | median vs ours | p99 vs ours | note |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in (r for r in runs if r.grammar == grammar):
            s = stats(r.times_us)
            ratio = s["median"] / base["median"] if r is not ours else 1.0
            ratio99 = s["p99"] / base["p99"] if r is not ours else 1.0
            note = r.error or ("" if not r.refused else f"refused {r.refused} document tokens")
            print(
                f"| {r.name} | {r.compile_s:.3f} | {len(r.times_us)} | {s['median']:.1f} | {s['p90']:.1f} | "
                f"{s['p99']:.1f} | {s['max']:.1f} | {ratio:.2f}x | {ratio99:.2f}x | {note} |"
            )
            report["rows"].append(
                {
                    "engine": r.name,
                    "grammar": grammar,
                    "compile_s": r.compile_s,
                    "masks": len(r.times_us),
                    "refused": r.refused,
                    "error": r.error,
                    **s,
                }
            )
        report[f"ours_cpu_{grammar}"] = cpu
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
