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
import time
from pathlib import Path
from typing import Any

import decoding as dc
from decoding.cli.main import common_options
from decoding.io import atomic_write_json, atomic_write_text


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


def _text(out: Path, a: argparse.Namespace, lm: Any) -> str:
    prompts = ["Write one sentence about the sea.", "Name three uses of a paperclip."]
    g = dc.generate(lm, prompts, max_new_tokens=24 if a.quick else 64, sampling=dc.Sampling(typical=0.9, temperature=0.8),
                    seed=a.seed)
    g.save(out / "text.jsonl")
    return f"SmolLM2, typical 0.9 + temperature 0.8: {sum(map(len, g.tokens))} tokens, {g.seconds:.1f} s"


def _json(out: Path, a: argparse.Namespace, lm: Any) -> str:
    g = dc.generate(lm, "Describe a cat as a JSON object with its name and age.", n=2,
                    max_new_tokens=48 if a.quick else 96, grammar="json", seed=a.seed)
    g.save(out / "json.jsonl")
    for text in g.text:
        try:
            json.loads(text)
        except ValueError:
            raise RuntimeError(f"grammar-constrained output did not parse: {text!r}") from None
    closed = sum(g.info["budget_limited"])
    return f"SmolLM2 + JSON grammar: {len(g)}/{len(g)} parse ({closed} closed near the token budget)"


def _radd(out: Path, a: argparse.Namespace, _: Any) -> str:
    steps = 32 if a.quick else 128
    template = "The ________ sat on the mat and ________ the evening."
    radd = dc.load("radd-brown", a.device)
    cached = dc.generate(radd, template, n=2, steps=steps, seed=a.seed)
    plain = dc.generate(radd, template, n=2, steps=steps, seed=a.seed, cache=False)
    if cached.text != plain.text:
        raise RuntimeError("RADD cache changed the samples")
    result = {"template": template, "cached": {"text": cached.text, "nfe": cached.nfe},
              "uncached": {"text": plain.text, "nfe": plain.nfe}}
    atomic_write_json(out / "radd.json", result)
    return f"RADD infill, {steps} steps: NFE/sample {sum(plain.nfe) / 2:.0f} uncached -> {sum(cached.nfe) / 2:.0f} cached, same samples"


def _assd(out: Path, a: argparse.Namespace, _: Any) -> str:
    template = "It was a ____________ morning, and the ____________ was ready."
    arm = dc.load("as-arm-brown", a.device)
    fast = dc.generate(arm, template, n=2, speculative=4, seed=a.seed)
    seq = dc.generate(arm, template, n=2, speculative=0, seed=a.seed)
    blanks = fast.settings["blank_count"]
    atomic_write_json(out / "assd.json", {"template": template, "assd_k4": {"text": fast.text, "nfe": fast.nfe},
                                          "sequential": {"text": seq.text, "nfe": seq.nfe}})
    return f"AS-ARM infill of {blanks} tokens: NFE/sample {sum(seq.nfe) / 2:.0f} sequential -> {sum(fast.nfe) / 2:.0f} ASSD k=4"


def _image(out: Path, a: argparse.Namespace, _: Any) -> str:
    n = 16 if a.quick else 64
    g = dc.generate(dc.load("fashion-large", a.device), n=n, class_label=[i % 10 for i in range(n)], solver="dpmpp_2m",
                    steps=10, seed=a.seed)
    png, _ = g.save(out / "fashion.png")
    return f"fashion-large, DPM-Solver++(2M), 10 steps: {n} images -> {png.name}"


PARTS = {"text": _text, "json": _json, "radd": _radd, "assd": _assd, "image": _image}


def run(a: argparse.Namespace) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# decoding demo", ""]
    lm = dc.load("smollm2", a.device) if {"text", "json"} - set(a.skip) else None
    for name, fn in PARTS.items():
        if name in a.skip:
            continue
        t = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        msg = fn(out, a, lm)
        lines.append(f"- **{name}** ({time.perf_counter() - t:.1f} s): {msg}")
        print(f"[demo] {name}: {msg}", flush=True)
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print(f"[demo] outputs written to {out.resolve()}/")
    return 0
