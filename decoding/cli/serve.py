"""``decoding serve MODEL``: an OpenAI-compatible HTTP server (needs the ``serve`` extra: fastapi, uvicorn).

    decoding serve smollm2                                  # http://127.0.0.1:8000/v1
    decoding serve smollm2 --port 9000 --api-key secret
    decoding serve fashion-large                            # /v1/images/generations

Binds 127.0.0.1 unless ``--host`` says otherwise; with ``--api-key`` (or ``DECODING_API_KEY``) every
route but ``/health`` needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from decoding.cli.main import UsageError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                              description="Serve one model over OpenAI's API: completions, chat, structured outputs, images.")
    p.add_argument("model", metavar="MODEL", help="zoo name (smollm2, fashion-large, ...), a model folder or a .gguf file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=os.environ.get("DECODING_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health (default: $DECODING_API_KEY)")
    p.add_argument("--served-model-name", help="the name requests give as 'model' (default: MODEL as given)")
    p.add_argument("--device", dest="serve_device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: the model kind's choice)")
    p.add_argument("--engine", choices=["auto", "native", "fused", "hf"],
                   help="causal LMs: native (Llama, static KV cache), fused (native with fused Triton kernels; CUDA) or hf")
    p.add_argument("--max-batch-rows", type=int, default=64, help="rows decoded together at most (default 64)")
    p.add_argument("--chunk-steps", type=int, help="decode steps between batch changes, 1-8 (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--bucket", choices=["auto", "on", "off"], default="auto",
                   help="pad the batch to powers of two for compiled / CUDA-graph steps (auto: on CUDA)")
    p.add_argument("--max-n", type=int, default=16, help="most samples per request (default 16)")
    p.add_argument("--max-tokens", type=int, default=2048, help="most new tokens per sample (default 2048)")
    p.add_argument("--max-prompt-tokens", type=int, default=4096, help="longest prompt in tokens (default 4096)")
    p.add_argument("--max-grammar-bytes", type=int, default=65536, help="largest grammar / JSON Schema (default 65536)")
    p.add_argument("--state-dir", type=Path, help="where ASAp tries persist (default: ~/.cache/decoding/serve)")
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from decoding.server import ServerConfig, create_app
    except ModuleNotFoundError as e:
        raise UsageError(f"decoding serve needs {e.name}: pip install 'decoding-engine[serve]'") from None
    if args.serve_device is not None:
        from decoding.cli.main import check_device

        check_device(args.serve_device)
    if args.max_n > args.max_batch_rows:
        raise UsageError(f"--max-n ({args.max_n}) must not exceed --max-batch-rows ({args.max_batch_rows})")
    import decoding as dc

    handle = dc.load(args.model, device=args.serve_device, dtype=args.dtype, engine=args.engine)
    config = ServerConfig(
        served_name=args.served_model_name or str(args.model), api_key=args.api_key, max_n=args.max_n,
        max_tokens=args.max_tokens, max_prompt_tokens=args.max_prompt_tokens, max_grammar_bytes=args.max_grammar_bytes,
        max_batch_rows=args.max_batch_rows, chunk_steps=args.chunk_steps, state_dir=args.state_dir,
        bucket_rows={"auto": None, "on": True, "off": False}[args.bucket],
    )
    app = create_app(handle, config)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
