"""Grammar decoders for text tasks: grammar-constrained sampling and grammar-aligned decoding (ASAp).

The task's grammar is ``data.grammar`` (a shipped grammar's name or a ``.lark`` path) or
``data.grammar_text`` (inline lark), the same one the ``validity`` and ``kl_exact`` (with
``condition = "grammar"``) metrics read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from decoding.core.protocols import Constraint
from decoding.evals.base import take_args
from decoding.evals.grammar_check import grammar_path
from decoding.evals.suite import TaskSpec
from decoding.evals.tasks_text import PROCESSOR_KEYS, EvalLM, TextDecoder, left_pad
from decoding.processors import standard_processors


def task_grammar(spec: TaskSpec | None, suite_dir: Path | None, who: str) -> tuple[str, str]:
    """``(source, start)`` for :func:`decoding.grammar.compile_grammar` from the task's ``data``."""
    data = {} if spec is None else spec.data
    start = str(data.get("start", "start"))
    if "grammar_text" in data:
        return str(data["grammar_text"]), start
    if "grammar" in data:
        return str(grammar_path(str(data["grammar"]), suite_dir)), start
    raise ValueError(
        f"{who} needs the task's grammar: set data.grammar (a name in grammars/ or a .lark path) or data.grammar_text"
    )


def grammar_constraints(spec: TaskSpec | None, suite_dir: Path | None) -> Callable[[EvalLM, int], Constraint]:
    """``factory(lm, batch_size) -> GrammarConstraint``; the grammar is compiled once per model."""
    source, start = task_grammar(spec, suite_dir, "settings.constrain")
    compiled: dict[int, Any] = {}

    def factory(lm: EvalLM, batch: int) -> Constraint:
        if id(lm) not in compiled:
            compiled[id(lm)] = compile_for(lm, source, start)
        return compiled[id(lm)].constraint(batch_size=batch, device=lm.device)

    return factory


def compile_for(lm: EvalLM, source: str, start: str) -> Any:
    from decoding.grammar import compile_grammar

    if lm.grammar_tokenizer is None or lm.eos_token_id is None:
        raise ValueError(
            f"model {lm.name} cannot be grammar-constrained (it needs a token vocabulary and an EOS token)"
        )
    return compile_grammar(
        source, lm.grammar_tokenizer, lm.eos_token_id, vocab_size=lm.vocab_size, start=start
    )


def aligned_decoder(
    settings: dict[str, Any], spec: TaskSpec | None = None, suite_dir: Path | None = None
) -> TextDecoder:
    """Grammar-aligned decoding with ASAp (Park et al., arXiv 2405.21047).

    ASAp learns, across samples, how likely each prefix is to end grammatical, and converges to
    the model's distribution conditioned on the grammar. It learns in sample order, so a config
    runs its chunks in order on one process and stores its trie with every chunk (resumable).

    Settings: ``max_new_tokens`` (required), ``rows`` (samples per decode call between trie
    updates; 1 is the paper's setting) and the processors of the autoregressive decoder.
    """
    from decoding.aligned import ASAp
    from decoding.aligned.sample import sample_aligned

    s = take_args(
        "decoder aligned", settings, {"max_new_tokens": None, "rows": 1, **dict.fromkeys(PROCESSOR_KEYS)}
    )
    n, rows = s["max_new_tokens"], s["rows"]
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"decoder aligned: settings.max_new_tokens must be an integer >= 1, got {n!r}")
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"decoder aligned: settings.rows must be an integer >= 1, got {rows!r}")
    if s["repetition_penalty"] not in (None, 1, 1.0):
        raise ValueError(
            "decoder aligned: repetition_penalty reads the sequence; ASAp aligns to state-free processors only"
        )
    procs = standard_processors(**{k: s[k] for k in PROCESSOR_KEYS})
    factory = grammar_constraints(spec, suite_dir)
    box: dict[str, Any] = {"asap": None}

    def asap_for(lm: EvalLM) -> Any:
        if box["asap"] is None:
            box["asap"] = ASAp(lm.eos_token_id)
        return box["asap"]

    def generate(
        lm: EvalLM, prompts: list[list[int]], generator: torch.Generator
    ) -> tuple[list[list[int]], list[float]]:
        asap = asap_for(lm)
        seqs: list[list[int]] = []
        nfe: list[float] = []
        for i in range(0, len(prompts), rows):
            group = prompts[i : i + rows]
            out = sample_aligned(
                lm.model,
                factory(lm, len(group)),
                left_pad(group, lm.pad_token_id, lm.device),
                asap=asap,
                steps=n,
                processors=procs,
                pad_token_id=lm.pad_token_id,
                generator=generator,
            )
            seqs += out.sequences
            nfe += out.result.nfe.tolist()
        return seqs, nfe

    def save_state() -> bytes:
        if box["asap"] is None:
            return b""
        fd, tmp = tempfile.mkstemp(suffix=".safetensors")
        os.close(fd)
        try:
            box["asap"].save(tmp)
            return Path(tmp).read_bytes()
        finally:
            Path(tmp).unlink(missing_ok=True)

    def load_state(state: bytes | None) -> None:
        if not state:
            box["asap"] = None
            return
        fd, tmp = tempfile.mkstemp(suffix=".safetensors")
        with os.fdopen(fd, "wb") as f:
            f.write(state)
        try:
            box["asap"] = ASAp.load(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)

    return TextDecoder("aligned", n, generate, procs, save_state=save_state, load_state=load_state)


DECODERS = {"aligned": aligned_decoder}
