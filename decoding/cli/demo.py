"""``decoding demo``: every capability end to end, on the models shipped with the engine.

Writes into one folder (default ``decoding-demo/``):

- ``text.jsonl``: SmolLM2-135M-Instruct, locally typical sampling (chat prompts);
- ``json.jsonl``: SmolLM2 constrained by the built-in JSON grammar (every sample parses: the last tokens are
  steered to a complete document within the token budget);
- ``radd.json``: the RADD model (models/radd-brown): infilling, with and without the exact cache;
- ``assd.json``: the any-subset model (models/as-arm-brown): ASSD infilling vs sequential;
- ``fashion.png`` + ``fashion.json``: class-conditional Fashion-MNIST images (models/fashion-large);
- ``summary.md``: what ran, NFE and wall time of each part.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from decoding.cli.main import common_options


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="run every decoder once on the shipped models and write the outputs to a folder",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="decoding-demo", help="output folder (default: decoding-demo)")
    p.add_argument("--quick", action="store_true", help="smaller settings (used by the tests)")
    p.add_argument("--skip", nargs="*", default=[], choices=["text", "json", "radd", "assd", "image"],
                   help="parts to leave out")
    common_options(p)
    p.set_defaults(func=run)
    return p


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _zoo(name: str) -> str:
    from decoding.models.image import models_root

    return str(models_root() / name)


def _text(out: Path, a: argparse.Namespace) -> str:
    from decoding.text_api import generate

    prompts = ["Write one sentence about the sea.", "Name three uses of a paperclip."]
    res = generate("smollm2", prompts, n=1, max_new_tokens=24 if a.quick else 64, typical=0.9,
                   temperature=0.8, seed=a.seed, device=a.device)
    _write(out / "text.jsonl", "".join(json.dumps(vars(r) if hasattr(r, "__dict__") else r.__dict__) + "\n" for r in res))
    return f"SmolLM2, typical 0.9 + temperature 0.8: {sum(r.new_tokens for r in res)} tokens, {res[0].seconds:.1f} s"


def _json(out: Path, a: argparse.Namespace) -> str:
    from decoding.adapters.text_lm import load_text_lm
    from decoding.grammar.compiled import compile_grammar
    from decoding.text_api import generate

    lm = load_text_lm("smollm2", device=a.device)
    g = compile_grammar("json", lm.tokenizer, lm.eos_token_ids[0])
    res = generate(lm, ["Describe a cat as a JSON object with its name and age."], n=2,
                   max_new_tokens=48 if a.quick else 96, seed=a.seed, grammar=g)
    rows = []
    for r in res:
        try:
            json.loads(r.text)
            ok = True
        except ValueError:
            ok = False
        rows.append({"text": r.text, "finish_reason": r.finish_reason, "parses": ok, "new_tokens": r.new_tokens,
                     "budget_limited": r.budget_limited})
    _write(out / "json.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    bad = [r for r in rows if not r["parses"]]
    if bad:
        raise RuntimeError(f"grammar-constrained output did not parse: {bad[0]['text']!r}")
    closed = sum(r["budget_limited"] for r in rows)
    return f"SmolLM2 + JSON grammar: {len(rows)}/{len(rows)} parse ({closed} closed near the token budget)"


def _radd(out: Path, a: argparse.Namespace) -> str:
    from decoding.text_masked_api import generate_masked

    steps = 32 if a.quick else 128
    template = "The ________ sat on the mat and ________ the evening."
    cached = generate_masked(_zoo("radd-brown"), steps=steps, infill=template, num_samples=2, seed=a.seed, device=a.device)
    plain = generate_masked(_zoo("radd-brown"), steps=steps, infill=template, num_samples=2, seed=a.seed, device=a.device, cache=False)
    if cached["texts"] != plain["texts"]:
        raise RuntimeError("RADD cache changed the samples")
    _write(out / "radd.json", json.dumps({"template": template, "cached": cached, "uncached": plain}, indent=2))
    return (f"RADD infill, {steps} steps: NFE/sample {sum(plain['nfe']) / 2:.0f} uncached -> "
            f"{sum(cached['nfe']) / 2:.0f} cached, same samples")


def _assd(out: Path, a: argparse.Namespace) -> str:
    from decoding.text_assd_api import assd_infill

    template = "It was a ____________ morning, and the ____________ was ready."
    fast = assd_infill(_zoo("as-arm-brown"), template, k=4, num_samples=2, seed=a.seed, device=a.device)
    seq = assd_infill(_zoo("as-arm-brown"), template, k=None, num_samples=2, seed=a.seed, device=a.device)
    _write(out / "assd.json", json.dumps({"template": template, "assd_k4": fast, "sequential": seq}, indent=2))
    return (f"AS-ARM infill of {fast['tokens']} tokens: NFE/sample {sum(seq['nfe']) / 2:.0f} sequential -> "
            f"{sum(fast['nfe']) / 2:.0f} ASSD k=4")


def _image(out: Path, a: argparse.Namespace) -> str:
    from decoding.image_api import sample_images, write_samples

    n = 16 if a.quick else 64
    s = sample_images("fashion-large", n=n, class_label=[i % 10 for i in range(n)], solver="dpmpp_2m",
                      steps=10, seed=a.seed, device=a.device)
    png, _ = write_samples(s, out / "fashion.png")
    return f"fashion-large, DPM-Solver++(2M), 10 steps: {n} images -> {png.name}"


PARTS = {"text": _text, "json": _json, "radd": _radd, "assd": _assd, "image": _image}


def run(a: argparse.Namespace) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# decoding demo", ""]
    for name, fn in PARTS.items():
        if name in a.skip:
            continue
        t = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        msg = fn(out, a)
        lines.append(f"- **{name}** ({time.perf_counter() - t:.1f} s): {msg}")
        print(f"[demo] {name}: {msg}", flush=True)
    _write(out / "summary.md", "\n".join(lines) + "\n")
    print(f"[demo] outputs written to {out.resolve()}/")
    return 0
