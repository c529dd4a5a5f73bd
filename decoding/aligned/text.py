"""Grammar-aligned text generation (ASAp, arXiv 2405.21047) for a text model: what the CLI calls.

    decoding text --grammar G --aligned [--trie PATH]  ->  aligned_text(lm, G, prompt, n=..., trie=PATH)

The trie file is keyed by the model, the grammar text and the processors (its ``signature``), and
inside it by the prompt, so one file can serve several prompts but never mixes distributions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decoding.aligned.sample import AlignedRun, generate_aligned
from decoding.core.protocols import Processor


@dataclass(frozen=True)
class AlignedText:
    """Output of :func:`aligned_text`.

    Attributes:
        texts: the decoded samples, in sampling order (special tokens removed).
        run: the token-level :class:`~decoding.aligned.sample.AlignedRun` (ids, completeness,
            the trie, NFE, seconds).
    """

    texts: list[str]
    run: AlignedRun


def trie_signature(model_name: str, grammar_source: str, processors: Sequence[Processor] = ()) -> str:
    """The text that ties a trie file to one distribution: model, grammar (hashed) and processors."""
    digest = hashlib.sha256(grammar_source.encode("utf-8")).hexdigest()[:16]
    procs = ",".join(repr(p) for p in processors)
    return f"model={model_name};grammar_sha256={digest};processors=[{procs}]"


def aligned_text(
    lm: Any,
    grammar: str | os.PathLike[str],
    prompt: str,
    *,
    n: int = 1,
    max_new_tokens: int = 128,
    trie: str | os.PathLike[str] | None = None,
    batch_size: int = 1,
    processors: Sequence[Processor] = (),
    chat: bool | None = None,
    seed: int | None = 0,
    progress: bool = False,
    on_sample: Callable[[str], Any] | None = None,
) -> AlignedText:
    """Draw ``n`` grammar-aligned samples of ``prompt`` from a text model.

    Args:
        lm: a :class:`decoding.adapters.text_lm.TextLM` (``load_text_lm("smollm2")``).
        grammar: a built-in grammar name, a ``.lark`` path or lark text (see
            :func:`decoding.grammar.compile_grammar`).
        prompt: the user prompt (wrapped in the chat template unless ``chat=False``).
        n: number of samples.
        max_new_tokens: per sample.
        trie: a trie file: loaded if it exists (its signature must match), saved after sampling.
        batch_size: rows per decode call (1 = the paper's algorithm; larger is faster, the trie
            is updated after each call).
        processors: state-free logits processors (temperature, top-k, ...); ASAp aligns to the
            distribution they produce.
        seed: random seed (same seed and same trie file -> same samples).
        on_sample: called with each decoded text as soon as its batch is done.
    """
    from decoding.grammar import compile_grammar, grammar_source

    source, _ = grammar_source(grammar if isinstance(grammar, str) else Path(grammar))
    eos = tuple(lm.eos_token_ids)
    if not eos:
        raise ValueError(f"model {lm.name} has no EOS token; grammar-aligned decoding needs one")
    width = getattr(lm.model, "vocab_size", None)  # the logits may be wider than the tokenizer
    compiled = compile_grammar(source, lm.tokenizer, eos_token_id=eos[0], vocab_size=width)
    ids = lm.encode([prompt], chat)["input_ids"][0]

    def emit(seqs: list[list[int]]) -> None:
        if on_sample is not None:
            for s in seqs:
                on_sample(lm.decode(s))

    run = generate_aligned(
        lm.model,
        lambda b: compiled.constraint(batch_size=b, device=lm.device),
        ids,
        num_samples=n,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        batch_size=batch_size,
        processors=processors,
        pad_token_id=lm.pad_token_id,
        trie=trie,
        signature=trie_signature(lm.name, source, processors),
        seed=seed,
        progress=progress,
        on_batch=emit,
    )
    return AlignedText(texts=[lm.decode(s) for s in run.sequences], run=run)
