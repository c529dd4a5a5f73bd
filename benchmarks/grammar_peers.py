"""Peer grammar engines for ``benchmarks/grammar_mask.py``: llguidance, xgrammar, outlines-core, transformers-cfg.

Each peer is a function ``(tokenizer, grammar_name, docs_ids) -> PeerRun`` that compiles the
grammar, then replays every document token by token, timing the next-token mask and checking
that the document's own token is allowed. Peers are installed from PyPI into a separate folder
(``--target``) so the project's virtual environment is left as it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PACKAGES = [
    "llguidance",
    "xgrammar",
    "transformers-cfg",
    "outlines",
    "outlines_core",
    "apache-tvm-ffi",
    "attrs",
    "cloudpickle",
    "diskcache",
    "genson",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "termcolor",
    "protobuf",
]

TCFG_JSON = r"""
root ::= ws value ws
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( ws "," ws member )* )? ws "}"
member ::= string ws ":" ws value
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws ::= [ \t\n\r]*
"""

TCFG_ARITHMETIC = r"""
root ::= ws sum ws
sum ::= product ( ws [-+] ws product )*
product ::= atom ( ws [*/] ws atom )*
atom ::= number | "-" ws atom | "(" ws sum ws ")"
number ::= [0-9]+ ( "." [0-9]+ )?
ws ::= " "*
"""


@dataclass
class PeerRun:
    """Timings of one engine on one grammar (microseconds per mask)."""

    name: str
    grammar: str
    compile_s: float = float("nan")
    times_us: list[float] = field(default_factory=list)
    docs: int = 0
    refused: int = 0  # document tokens the engine's mask refused (its grammar differs)
    error: str = ""


def ensure_peers(target: Path, install: bool) -> list[str]:
    """Put ``target`` on ``sys.path``; ``pip install --target`` the peers there if ``install``. Returns notes."""
    notes = []
    target.mkdir(parents=True, exist_ok=True)
    if install:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            "--no-deps",
            *PACKAGES,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            notes.append(f"pip install failed: {proc.stderr.strip()[-400:]}")
    if str(target) not in sys.path:
        sys.path.append(str(target))
    return notes


def _bit(words: np.ndarray, i: int) -> bool:
    return bool((int(words[i // 32]) >> (i % 32)) & 1)


def _replay(
    run: PeerRun,
    docs: list[list[int]],
    mask: Callable[[], Callable[[int], bool]],
    accept: Callable[[int], None],
    reset: Callable[[], None],
    max_tokens: int | None,
) -> None:
    budget = max_tokens if max_tokens is not None else 1 << 60
    for ids in docs:
        if budget <= 0:
            break
        reset()
        run.docs += 1
        for t in ids:
            start = time.perf_counter()
            allowed = mask()
            run.times_us.append((time.perf_counter() - start) * 1e6)
            if not allowed(t):
                run.refused += 1
                break
            accept(t)
            budget -= 1


def run_llguidance(tok, grammar: str, lark_text: str, docs, eos: int, max_tokens=None) -> PeerRun:
    import llguidance
    import llguidance.hf
    import llguidance.numpy as lln

    run = PeerRun("llguidance", grammar)
    llt = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok))
    spec = llguidance.LLMatcher.grammar_from_lark(lark_text)
    start = time.perf_counter()
    m = llguidance.LLMatcher(llt, spec)
    run.compile_s = time.perf_counter() - start
    if m.get_error():
        run.error = m.get_error()
        return run
    bm = lln.allocate_token_bitmask(1, llt.vocab_size)
    state = {"m": m}

    def mask():
        lln.fill_next_token_bitmask(state["m"], bm, 0)
        return lambda t: _bit(bm[0], t)

    def reset():
        state["m"] = llguidance.LLMatcher(llt, spec)

    _replay(run, docs, mask, lambda t: state["m"].consume_token(t), reset, max_tokens)
    return run


def run_xgrammar(tok, grammar: str, lark_text: str | None, docs, eos: int, max_tokens=None) -> PeerRun:
    import xgrammar as xgr

    run = PeerRun("xgrammar" + (" (lark)" if lark_text else " (built-in JSON)"), grammar)
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    compiler = xgr.GrammarCompiler(info)
    start = time.perf_counter()
    compiled = (
        compiler.compile_grammar(xgr.Grammar.from_lark(lark_text))
        if lark_text
        else compiler.compile_builtin_json_grammar()
    )
    run.compile_s = time.perf_counter() - start
    bm = xgr.allocate_token_bitmask(1, len(tok))
    state = {"m": xgr.GrammarMatcher(compiled)}

    def mask():
        state["m"].fill_next_token_bitmask(bm)
        words = bm[0].numpy()
        return lambda t: _bit(words, t)

    def reset():
        state["m"] = xgr.GrammarMatcher(compiled)

    _replay(run, docs, mask, lambda t: state["m"].accept_token(t), reset, max_tokens)
    return run


def run_outlines(
    tok, grammar: str, texts: list[str], docs, eos: int, vocab_bytes, max_tokens=None
) -> PeerRun:
    """outlines-core (the engine of outlines): regex of JSON Schema ``{}`` (bounded depth, single spaces)."""
    import outlines_core as oc
    from outlines_core.json_schema import build_regex_from_schema

    run = PeerRun("outlines-core", grammar)
    if grammar != "json":
        run.error = "regular languages only (nested parentheses are not regular)"
        return run
    regex = build_regex_from_schema("{}")
    keep = [ids for text, ids in zip(texts, docs, strict=False) if re.fullmatch(regex, text)]
    table: dict[bytes, list[int]] = {}
    for i, b in enumerate(vocab_bytes):
        if b and i != eos:
            table.setdefault(b, []).append(i)
    voc = oc.Vocabulary(eos, table)
    start = time.perf_counter()
    index = oc.Index(regex, voc)
    run.compile_s = time.perf_counter() - start
    words = torch.zeros((len(tok) + 31) // 32, dtype=torch.int32)
    state = {"g": oc.Guide(index)}

    def mask():
        state["g"].write_mask_into(words.data_ptr(), words.numel(), words.element_size())
        w = words.numpy()
        return lambda t: _bit(w, t)

    def reset():
        state["g"] = oc.Guide(index)

    _replay(run, keep, mask, lambda t: None if t == eos else state["g"].advance(t), reset, max_tokens)
    run.error = (
        f"ran the {len(keep)} of {len(docs)} documents its regex accepts" if len(keep) < len(docs) else ""
    )
    return run


def _tcfg_tokenizer(tok):
    """transformers-cfg 0.2.7 predates transformers 5: give it the class it knows (GPT2TokenizerFast),
    GPT-2's byte table (it would download the 'gpt2' tokenizer for it) and report a slow tokenizer
    (it would reload one from the hub). The token ids and bytes are SmolLM2's own."""
    from transformers import GPT2TokenizerFast

    from decoding.tokenizers import byte_level_decoder

    t2 = GPT2TokenizerFast(
        tokenizer_object=tok.backend_tokenizer,
        eos_token=tok.eos_token,
        bos_token=tok.bos_token,
        unk_token=tok.unk_token,
        name_or_path=str(getattr(tok, "name_or_path", "")),
    )
    dec = byte_level_decoder()
    t2.byte_decoder = dec
    t2.byte_encoder = {b: c for c, b in dec.items()}
    type(t2).is_fast = property(lambda self: False)
    return t2


def run_transformers_cfg(tok, grammar: str, docs, eos: int, max_tokens=None) -> PeerRun:
    from transformers_cfg.generation.logits_process import GrammarConstrainedLogitsProcessor
    from transformers_cfg.grammar_utils import IncrementalGrammarConstraint

    run = PeerRun("transformers-cfg", grammar)
    text = TCFG_JSON if grammar == "json" else TCFG_ARITHMETIC
    tok = _tcfg_tokenizer(tok)
    start = time.perf_counter()
    IncrementalGrammarConstraint(text, "root", tok)
    run.compile_s = time.perf_counter() - start
    scores = torch.zeros(1, len(tok))
    state: dict = {}

    def reset():
        state["proc"] = GrammarConstrainedLogitsProcessor(IncrementalGrammarConstraint(text, "root", tok))
        state["ids"] = [eos]  # a one-token prompt

    def mask():
        out = state["proc"](torch.tensor([state["ids"]]), scores)
        return lambda t: bool(torch.isfinite(out[0, t]))

    _replay(run, docs, mask, lambda t: state["ids"].append(t), reset, max_tokens)
    return run
