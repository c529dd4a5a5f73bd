"""Load test of ``decoding serve`` (local only, bounded): concurrent streaming clients against one server.

    python benchmarks/serve_load.py [--model smollm2] [--clients 32] [--requests 4] [--max-tokens 32]
    python benchmarks/serve_load.py --device cuda --decode-baseline     # on a GPU

``--clients`` AsyncOpenAI clients each send ``--requests`` streaming chat requests one after the
other; every second request is constrained by a JSON Schema. Each request has its own seed, so
the answers are fixed: the script checks that every request is answered, every constrained answer
validates, and that the concurrent answers equal the same requests served one at a time.

Runs, in this order, on one server:

1. ``cold``: the load on a fresh server (the schema compiles while the first requests wait);
2. ``warm``: the same load again (grammar cached);
3. ``sequential``: the same requests one at a time (the peer of continuous batching);
4. ``decode`` (``--decode-baseline``): the same requests as ``decode()`` calls of ``--clients`` rows
   each, with the same per-row processors, constraints and random streams, no server (the ceiling).

Prints tokens/s of each, the ratios warm / sequential and warm / decode, and p50 / p99 time to
first token (first streamed text) of constrained and free requests, cold and warm. ``--json``
writes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def requests_for(clients: int, per_client: int, max_tokens: int) -> list[list[dict[str, Any]]]:
    """Per client, its requests (kwargs of ``chat.completions.create``); odd ones are constrained."""
    out = []
    for c in range(clients):
        mine = []
        for r in range(per_client):
            i = c * per_client + r
            kw: dict[str, Any] = dict(
                messages=[{"role": "user", "content": f"Describe person number {i} in one sentence."}],
                max_tokens=max_tokens, seed=i, temperature=0.8,
            )
            if i % 2:
                kw["messages"] = [{"role": "user", "content": f"Give person number {i} as JSON with a name and an age."}]
                kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
            mine.append(kw)
        out.append(mine)
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


async def one(client: Any, model: str, kw: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    first, text, tokens, finish = None, [], 0, None
    stream = await client.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True}, **kw)
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for c in chunk.choices:
            if c.delta.content:
                first = first if first is not None else time.perf_counter() - start
                text.append(c.delta.content)
            if c.finish_reason is not None:
                finish = c.finish_reason
                first = first if first is not None else time.perf_counter() - start
    return dict(text="".join(text), tokens=tokens, finish=finish, ttft=first, seconds=time.perf_counter() - start,
                constrained="response_format" in kw)


async def load(url: str, model: str, plan: list[list[dict[str, Any]]], concurrent: bool) -> tuple[list[dict], float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=3600)
    results: list[dict] = [{} for _ in range(sum(len(p) for p in plan))]

    async def run_client(c: int) -> None:
        for r, kw in enumerate(plan[c]):
            results[c * len(plan[c]) + r] = await one(client, model, kw)

    start = time.perf_counter()
    async with client:
        if concurrent:
            await asyncio.gather(*[run_client(c) for c in range(len(plan))])
        else:
            for c in range(len(plan)):
                await run_client(c)
    return results, time.perf_counter() - start


def check(results: list[dict], expected: int) -> dict[str, Any]:
    """Every request answered with a finish reason; every constrained answer that says ``stop`` is a
    valid document (one that says ``length`` ran out of ``max_tokens`` before it could close)."""
    import jsonschema  # imported by main() before the load runs, so a missing package fails fast

    answered = [r for r in results if r.get("finish") is not None]
    invalid = cut = 0
    for r in answered:
        if r["constrained"] and r["finish"] == "length":
            cut += 1
        elif r["constrained"]:
            try:
                jsonschema.validate(json.loads(r["text"]), SCHEMA)
            except (ValueError, jsonschema.ValidationError):
                invalid += 1
    return {"requests": expected, "answered": len(answered), "constrained": sum(r["constrained"] for r in answered),
            "invalid_constrained": invalid, "constrained_length": cut}


def summary(results: list[dict], seconds: float) -> dict[str, Any]:
    tokens = sum(r["tokens"] for r in results)
    out: dict[str, Any] = {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 2)}
    for name, pick in (("constrained", True), ("free", False)):
        tt = [r["ttft"] for r in results if r["constrained"] == pick and r["ttft"] is not None]
        out[f"ttft_{name}_p50_s"] = round(percentile(tt, 50), 4)
        out[f"ttft_{name}_p99_s"] = round(percentile(tt, 99), 4)
    return out


def decode_baseline(server: Any, plan: list[list[dict[str, Any]]], rows: int) -> dict[str, Any]:
    """The same requests as ``decode()`` calls of ``rows`` rows each (prompt + all steps in one call)."""
    import torch

    from decoding.api.causal_lm import compiled_grammar, grammar_text
    from decoding.core.loop import decode
    from decoding.core.row_constraints import RowConstraints
    from decoding.core.row_generators import RowGenerators
    from decoding.processes.autoregressive import Autoregressive, generated_tokens
    from decoding.processors.rows import RowProcessors
    from decoding.server.schemas import ChatRequest
    from decoding.server.text import encode_prompts, sampling_of

    lm = server.lm
    flat = [kw for p in plan for kw in p]

    def run() -> tuple[int, float]:
        tokens, seconds = 0, 0.0
        for lo in range(0, len(flat), rows):
            chunk = flat[lo : lo + rows]
            reqs = [ChatRequest(model="m", **kw) for kw in chunk]
            ids = [encode_prompts(lm, r)[0] for r in reqs]
            width = max(map(len, ids))
            x = torch.full((len(ids), width), lm.pad_token_id, dtype=torch.long)
            mask = torch.zeros(len(ids), width, dtype=torch.bool)
            for i, p in enumerate(ids):
                x[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = True
            max_tokens = max(r.max_tokens for r in reqs)
            cons = []
            for r in reqs:
                g = None
                if r.response_format is not None:  # compiled before: the lm's grammar cache has it
                    g = compiled_grammar(lm, grammar_text(None, r.response_format.json_schema.schema_)[0], None)[0]
                cons.append(None if g is None else g.constraint(1, lm.device, max_tokens=r.max_tokens))
            procs = RowProcessors([tuple(sampling_of(r).processors()) for r in reqs])
            if hasattr(lm.model, "capacity"):
                lm.model.capacity = width + max_tokens + 1
            gens = RowGenerators.from_seeds([r.seed for r in reqs], lm.device)
            process = Autoregressive(eos_token_id=list(lm.eos_token_ids), pad_token_id=lm.pad_token_id)
            start = time.perf_counter()
            res = decode(lm.model, process, {"input_ids": x.to(lm.device), "attention_mask": mask.to(lm.device)},
                         steps=max_tokens, processors=[procs] if procs else (),
                         constraint=RowConstraints(cons, lm.model.vocab_size, lm.device) if any(cons) else None,
                         generator=gens)
            if lm.device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            tokens += sum(len(t) for t in generated_tokens(res.state))
        return tokens, seconds

    tokens, seconds = server.scheduler.run_task(run).result()
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    try:  # the answers are checked after minutes of load: fail before it if the checker is missing
        import jsonschema  # noqa: F401
    except ImportError:
        raise SystemExit("serve_load.py checks the constrained answers with jsonschema: pip install jsonschema") from None
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--chunk-steps", type=int, default=None, help="see decoding serve --chunk-steps (default: auto)")
    p.add_argument("--bucket", choices=["auto", "on", "off"], default="auto", help="see decoding serve --bucket")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--decode-baseline", action="store_true", help="also time decode() over the same batches")
    p.add_argument("--skip-sequential", action="store_true")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)

    import torch

    import decoding as dc
    from decoding.server import ServerConfig, create_app
    from decoding.server.live import LiveServer

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = dc.load(args.model, device=args.device, dtype=args.dtype)
    import tempfile

    config = ServerConfig(served_name="bench", max_batch_rows=max(args.clients, 1), max_n=1, chunk_steps=args.chunk_steps,
                          state_dir=Path(tempfile.mkdtemp(prefix="serve-load-")),
                          bucket_rows={"auto": None, "on": True, "off": False}[args.bucket])
    plan = requests_for(args.clients, args.requests, args.max_tokens)
    total = args.clients * args.requests
    report: dict[str, Any] = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"), "model": args.model, "device": str(lm.device),
        "device_name": torch.cuda.get_device_name() if lm.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "clients": args.clients, "requests_per_client": args.requests,
        "max_tokens": args.max_tokens,
        "load_average_start": list(__import__("os").getloadavg()),
    }
    app = create_app(lm, config)
    report["chunk_steps"] = app.state.server.scheduler.chunk_steps
    report["bucket"] = app.state.server.scheduler.bucket
    with LiveServer(app) as live:
        runs = {}
        for name in ("cold", "warm"):
            results, seconds = asyncio.run(load(live.url, "bench", plan, concurrent=True))
            report[name] = {**summary(results, seconds), **check(results, total)}
            runs[name] = results
        report["max_batch_rows_seen"] = app.state.server.scheduler.max_rows_seen
        if not args.skip_sequential:
            results, seconds = asyncio.run(load(live.url, "bench", plan, concurrent=False))
            report["sequential"] = {**summary(results, seconds), **check(results, total)}
            report["same_answers_concurrent_vs_sequential"] = [r["text"] for r in results] == [r["text"] for r in runs["warm"]]
            report["ratio_warm_vs_sequential"] = round(report["warm"]["tokens_per_s"] / report["sequential"]["tokens_per_s"], 3)
        report["same_answers_cold_vs_warm"] = [r["text"] for r in runs["cold"]] == [r["text"] for r in runs["warm"]]
        if args.decode_baseline:
            report["decode"] = decode_baseline(app.state.server, plan, args.clients)
            report["ratio_warm_vs_decode"] = round(report["warm"]["tokens_per_s"] / report["decode"]["tokens_per_s"], 3)
    print(json.dumps(report, indent=2))
    for name in ("cold", "warm", "sequential"):
        r = report.get(name)
        if r:
            print(f"{name:>10}: {r['tokens_per_s']:8.1f} tok/s  answered {r['answered']}/{r['requests']}  invalid "
                  f"{r['invalid_constrained']}  TTFT p50/p99 constrained {r['ttft_constrained_p50_s']:.3f}/"
                  f"{r['ttft_constrained_p99_s']:.3f} s, free {r['ttft_free_p50_s']:.3f}/{r['ttft_free_p99_s']:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
