"""Grammar-aligned decoding (ASAp, arXiv 2405.21047): per-token overhead over plain constrained decoding,
and trie memory per 1,000 samples.

    python benchmarks/aligned_overhead.py                       # CPU: free model + SmolLM2, JSON grammar
    python benchmarks/aligned_overhead.py --device cuda --models free smollm2 --batch 1 8 --samples 32
    python benchmarks/aligned_overhead.py --quick               # seconds, for the test suite

Both sides run in the same process on the same model, grammar, prompt and batch size, in
alternating rounds (plain, ASAp, plain, ASAp, ...) so that load drift hits both alike. Time per
generated token = wall time of the whole batch (ASAp: decode + trie update) / generated tokens.
The peer is the engine's own constrained decoding (``decode(..., constraint=grammar)``): no other
library implements ASAp with batches. Models:

- ``free``: a fixed random logits row (V = 49,152): costs nothing, so the ratio shows the raw
  overhead of ASAp's bookkeeping (the worst case for the ratio);
- ``smollm2``: the embedded SmolLM2-135M-Instruct through :func:`decoding.load`.

Memory: ASAp on the free model draws ``--memory-samples`` samples; the trie's Python objects are
measured with tracemalloc (allocations made in ``decoding/aligned/trie.py`` still alive) plus
the tensors of its cached reweighting vectors, and the saved file size is reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch

from decoding import decode
from decoding.aligned import ASAp, sample_aligned
from decoding.core.types import Prediction, State, new_generator
from decoding.processes.autoregressive import Autoregressive

PROMPT = "Give a JSON object describing a cat."


class FreeModel:
    """A fixed random next-token logits row for every state: ``(B, V)`` at no cost."""

    def __init__(self, vocab_size: int, device: torch.device) -> None:
        g = torch.Generator().manual_seed(0)
        self.row = (2.0 * torch.randn(vocab_size, generator=g)).to(device)

    def __call__(self, state: State) -> Prediction:
        return Prediction(logits=self.row.expand(state.batch_size, -1))


def _tokens(state: State, prompt_len: int) -> int:
    return int(state.memory["attention_mask"][:, prompt_len:].sum())


def overhead(model, grammar, prompt: torch.Tensor, eos: tuple[int, ...], batch: int, samples: int,
             max_new: int, rounds: int, device: torch.device) -> dict:  # fmt: skip
    """Alternating rounds of plain constrained decoding and ASAp; medians of seconds per token.

    ASAp runs as :func:`decoding.aligned.sample_aligned` does (``asap.constraint(grammar)`` as the
    loop's constraint, ``finish`` after), with ASAp's own time (its ``reweight`` calls + the trie
    update) measured apart: ``bookkeeping_us_per_token``.
    """
    asap = ASAp(eos)
    ids = prompt.expand(batch, -1).contiguous().to(device)
    process = Autoregressive(eos_token_id=list(eos), pad_token_id=eos[0])
    plain_t, asap_t, book_t = [], [], []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for r in range(rounds + 1):  # round 0 warms up (caches, grammar masks) and is not counted
        tp = ta = tb = 0.0
        np_ = na = 0
        for s in range(0, samples, batch):
            seed = 1000 * r + s
            sync()
            t = time.perf_counter()
            res = decode(model, process, ids, steps=max_new, constraint=grammar.constraint(batch_size=batch, device=device),
                         generator=new_generator(seed, device))  # fmt: skip
            sync()
            tp += time.perf_counter() - t
            np_ += _tokens(res.state, ids.shape[1])
            t = time.perf_counter()
            aligned = asap.constraint(grammar.constraint(batch_size=batch, device=device))
            book = [0.0]
            reweight = aligned.reweight

            def timed(logits, state, reweight=reweight, book=book):
                t0 = time.perf_counter()
                out = reweight(logits, state)
                book[0] += time.perf_counter() - t0
                return out

            aligned.reweight = timed
            res = decode(model, process, ids, steps=max_new, constraint=aligned,
                         generator=new_generator(seed, device))  # fmt: skip
            t0 = time.perf_counter()
            seqs = aligned.finish()
            book[0] += time.perf_counter() - t0
            sync()
            ta += time.perf_counter() - t
            tb += book[0]
            na += sum(len(q) for q in seqs)
        if r > 0:
            plain_t.append(tp / np_)
            asap_t.append(ta / na)
            book_t.append(tb / na)
    p, a = statistics.median(plain_t), statistics.median(asap_t)
    return {"plain_ms_per_token": 1e3 * p, "asap_ms_per_token": 1e3 * a, "ratio": a / p,
            "overhead_us_per_token": 1e6 * (a - p),
            "bookkeeping_us_per_token": 1e6 * statistics.median(book_t), "trie_nodes": asap.num_nodes, "samples_per_round": samples,
            "per_round_ratio": [x / y for x, y in zip(asap_t, plain_t, strict=True)]}  # fmt: skip


def memory(grammar, prompt: torch.Tensor, eos: tuple[int, ...], n: int, max_new: int, vocab: int) -> dict:
    """Trie size after ``n`` ASAp samples of the free model (batch 8)."""
    model = FreeModel(vocab, torch.device("cpu"))
    gc.collect()
    tracemalloc.start()
    asap = ASAp(eos)
    g = new_generator(0)
    tokens, done = 0, 0
    while done < n:
        b = min(8, n - done)
        out = sample_aligned(model, grammar.constraint(batch_size=b), prompt.expand(b, -1).contiguous(), asap=asap,
                             steps=max_new, generator=g)  # fmt: skip
        tokens += sum(len(q) for q in out.sequences)
        done += b
    gc.collect()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    trie_py = sum(
        s.size
        for s in snap.filter_traces([tracemalloc.Filter(True, "*aligned/trie.py")]).statistics("filename")
    )
    tensor_bytes = sum(
        t.element_size() * t.nelement() for _, nd in asap.trie.nodes() if nd._adjust for t in nd._adjust
    )
    with tempfile.TemporaryDirectory() as d:
        asap.save(Path(d) / "t.safetensors")
        file_bytes = (Path(d) / "t.safetensors").stat().st_size
    nodes = asap.num_nodes
    scale = 1000 / n
    return {"samples": n, "tokens": tokens, "nodes": nodes, "python_bytes": trie_py, "tensor_bytes": tensor_bytes,
            "bytes_per_node": (trie_py + tensor_bytes) / nodes, "MB_per_1000_samples": (trie_py + tensor_bytes) * scale / 1e6,
            "file_MB_per_1000_samples": file_bytes * scale / 1e6, "nodes_per_1000_samples": nodes * scale}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", nargs="+", default=["free", "smollm2"], choices=["free", "smollm2"])
    ap.add_argument("--grammar", default="json", help="built-in grammar name or .lark path")
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--samples", type=int, default=8, help="samples per round and side")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-samples", type=int, default=1000)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: steadier on a shared CPU)"
    )
    ap.add_argument("--quick", action="store_true", help="tiny settings (free model only) for the tests")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.models, args.batch, args.samples, args.max_new_tokens, args.rounds, args.memory_samples = (
            ["free"], [2], 2, 8, 1, 16)  # fmt: skip
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    import decoding as dc
    from decoding.grammar import compile_grammar

    lm = dc.load("smollm2", device=device) if "smollm2" in args.models else None
    if lm is not None:
        tok, eos = lm.tokenizer, lm.eos_token_ids
    else:
        from transformers import AutoTokenizer

        from decoding.adapters.smollm2 import smollm2_dir

        tok = AutoTokenizer.from_pretrained(smollm2_dir())
        eos = (tok.eos_token_id,)
    grammar = compile_grammar(args.grammar, tok, eos_token_id=eos[0])
    text = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    prompt = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    rows = []
    for name in args.models:
        model = FreeModel(len(tok), device) if name == "free" else lm.model
        for b in args.batch:
            r = overhead(
                model, grammar, prompt, eos, b, max(args.samples, b), args.max_new_tokens, args.rounds, device
            )
            r.update(model=name, batch=b)
            rows.append(r)
            print(f"{name:8s} batch {b:3d}: plain {r['plain_ms_per_token']:8.3f} ms/token, ASAp "
                  f"{r['asap_ms_per_token']:8.3f} ms/token, ratio {r['ratio']:.3f} "
                  f"(+{r['overhead_us_per_token']:.0f} us/token, ASAp's own code {r['bookkeeping_us_per_token']:.0f} us/token; rounds {' '.join(f'{x:.2f}' for x in r['per_round_ratio'])})",
                  flush=True)  # fmt: skip
    mem = memory(grammar, prompt, eos, args.memory_samples, args.max_new_tokens, len(tok))
    print(f"trie after {mem['samples']} samples ({mem['tokens']} tokens): {mem['nodes']} nodes, "
          f"{mem['bytes_per_node']:.0f} B/node -> {mem['MB_per_1000_samples']:.2f} MB per 1,000 samples in memory, "
          f"{mem['file_MB_per_1000_samples']:.2f} MB per 1,000 samples on disk")  # fmt: skip
    if args.out is not None:
        info = {"date": "2026-11-25", "device": str(device), "machine": platform.platform(), "torch": torch.__version__,
                "grammar": args.grammar, "max_new_tokens": args.max_new_tokens, "rounds": args.rounds}  # fmt: skip
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"info": info, "overhead": rows, "memory": mem}, indent=1))


if __name__ == "__main__":
    main()
