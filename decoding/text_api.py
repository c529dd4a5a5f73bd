"""Text generation in one call: ``generate(model, prompts, ...) -> list[TextResult]``.

>>> from decoding.text_api import generate
>>> out = generate("smollm2", ["Write a haiku about the sea."], max_new_tokens=32, typical=0.9, seed=0)
>>> print(out[0].text)

Every sample goes through the one decode loop (:func:`decoding.decode`) with the autoregressive
process, the model's KV cache and the processors in their documented order
(:mod:`decoding.processors.chain`). On CUDA, the native engine without a grammar or stop strings
runs the same computation as one CUDA graph per step (:mod:`decoding.adapters.fused_generate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.adapters.text_lm import TextLM, load_text_lm
from decoding.core.loop import decode
from decoding.core.protocols import Constraint, Processor
from decoding.core.types import Result, State, new_generator
from decoding.grammar.compiled import CompiledGrammar
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors.chain import standard_processors


@dataclass
class TextResult:
    """One sample.

    Attributes:
        prompt: the prompt as given; index: which prompt; sample: which of its ``n`` samples.
        text: the generated text (special tokens removed, cut before a stop string).
        tokens: generated token ids (EOS included when it ended the sample).
        prompt_tokens: prompt length in tokens (chat template included).
        new_tokens: ``len(tokens)``.
        finish_reason: ``"eos"``, ``"stop"`` (a stop string) or ``"length"``.
        nfe: model evaluations this sample used.
        seconds: wall time of the batch it was decoded in.
        budget_limited: a grammar's budget guard removed tokens near ``max_new_tokens`` so that
            the sample could still finish as a sentence of the grammar (see
            :class:`~decoding.grammar.budget.BudgetGuard`).
    """

    prompt: str
    index: int
    sample: int
    text: str
    tokens: list[int]
    prompt_tokens: int
    new_tokens: int
    finish_reason: str
    nfe: float
    seconds: float
    budget_limited: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StopStrings:
    """``stop(state) -> (B,) bool``: the decoded new text of a row contains one of ``stops``.

    Decodes only the last few tokens of each live row (enough to hold the longest stop string),
    so a step costs ``O(B)`` short detokenisations.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_length = prompt_length
        self.window = 4 * max(len(s) for s in self.stops) + 8

    def __call__(self, state: State) -> Tensor:
        out = torch.zeros(state.batch_size, dtype=torch.bool)
        new = state.x[:, self.prompt_length :][:, -self.window :].tolist()
        live = (~state.done).tolist()
        for i, row in enumerate(new):
            if live[i]:
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                out[i] = any(s in text for s in self.stops)
        return out


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop string, and whether one was found."""
    hits = [text.find(s) for s in stops if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def generate(
    model: str | Path | TextLM,
    prompts: str | Sequence[str],
    *,
    n: int = 1,
    max_new_tokens: int = 64,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    typical: float | None = None,
    repetition_penalty: float | None = None,
    greedy: bool = False,
    processors: Sequence[Processor] = (),
    stop: Sequence[str] = (),
    chat: bool | None = None,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    grammar: CompiledGrammar | Constraint | Callable[[TextLM, int], Constraint] | None = None,
    batch_size: int | None = None,
    fused: bool | None = None,
    on_step: Callable[[int, State], None] | None = None,
    progress: bool = False,
) -> list[TextResult]:
    """Sample ``n`` continuations of each prompt.

    Args:
        model: ``'smollm2'``, a transformers folder, a GGUF file, or a loaded :class:`TextLM`.
        prompts: one prompt or a list.
        n: samples per prompt.
        max_new_tokens: tokens to generate at most per sample (>= 1).
        temperature, top_k, top_p, min_p, typical, repetition_penalty: the standard processors
            (applied in the order of :func:`decoding.processors.standard_processors`).
        greedy: argmax decoding (processors still apply; temperature then has no effect).
        processors: extra processors, applied after the standard ones.
        stop: strings that end a sample (the text is cut before them).
        chat: wrap prompts in the model's chat template (default: when it has one).
        seed: random seed (same seed, device and settings -> same samples); None: random.
        device, dtype: used when ``model`` is a name or path.
        grammar: a :class:`~decoding.grammar.CompiledGrammar` (every sample then finishes as a
            sentence of it within ``max_new_tokens`` whenever that is possible: see
            :class:`~decoding.grammar.budget.BudgetGuard`), a token
            :class:`~decoding.core.protocols.Constraint` for the batch, or a factory
            ``grammar(lm, batch_size) -> Constraint`` (built once per batch).
        batch_size: rows per batch (default: all ``len(prompts) * n`` at once).
        fused: run the whole step as one CUDA graph (default: on CUDA with the native engine,
            no grammar, no stop strings and no ``on_step``).
        on_step: ``on_step(i, state)`` after every step of the loop (streaming).
        progress: show a progress bar.

    Returns:
        ``len(prompts) * n`` :class:`TextResult`, prompt-major (all samples of prompt 0 first).
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise ValueError("give at least one prompt")
    if n < 1:
        raise ValueError(f"n (samples per prompt) must be >= 1, got {n}")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    lm = model if isinstance(model, TextLM) else load_text_lm(model, device=device, dtype=dtype)
    procs = standard_processors(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical=typical,
        repetition_penalty=repetition_penalty,
    ) + list(processors)
    stops = [s for s in stop if s]
    rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
    bs = len(rows) if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = new_generator(seed, lm.device)
    use_fused = fused
    if use_fused is None:
        use_fused = lm.engine == "native" and lm.device.type == "cuda" and grammar is None and not stops and on_step is None
    if use_fused and (lm.engine != "native" or grammar is not None or stops or on_step is not None):
        raise ValueError("fused=True needs the native engine and no grammar, stop strings or on_step")
    results: list[TextResult] = []
    for lo in range(0, len(rows), bs):
        chunk = rows[lo : lo + bs]
        batch = lm.encode([prompts[i] for i, _ in chunk], chat)
        p = batch["input_ids"].shape[1]
        if p + max_new_tokens > lm.max_context:
            raise ValueError(
                f"prompt ({p} tokens) + max_new_tokens ({max_new_tokens}) exceeds the context of {lm.name} "
                f"({lm.max_context} tokens); lower max_new_tokens or shorten the prompt"
            )
        res, constraint = _run(
            lm, batch, procs, max_new_tokens, greedy, stops, grammar, generator, use_fused, on_step, progress
        )
        limited = getattr(constraint, "limited", None) or [False] * len(chunk)
        results.extend(_texts(lm, prompts, chunk, batch, res, stops, limited))
    return results


def _run(
    lm: TextLM,
    batch: dict[str, Tensor],
    procs: list[Processor],
    max_new_tokens: int,
    greedy: bool,
    stops: list[str],
    grammar: Any,
    generator: torch.Generator,
    fused: bool,
    on_step: Callable[[int, State], None] | None,
    progress: bool,
) -> tuple[Result, Any]:
    """Decode one batch: ``(result, the constraint used or None)``."""
    eos = list(lm.eos_token_ids) or None
    if fused:
        from decoding.adapters.fused_generate import fused_generate

        lm.model.capacity = batch["input_ids"].shape[1] + max_new_tokens + 1

        return fused_generate(
            lm.model, batch, max_new_tokens=max_new_tokens, processors=procs, eos_token_id=eos,
            pad_token_id=lm.pad_token_id, greedy=greedy, generator=generator,
        ), None
    p = batch["input_ids"].shape[1]
    if hasattr(lm.model, "capacity"):  # static KV cache: room for exactly this generation (rounded up)
        lm.model.capacity = p + max_new_tokens + 1
    stopper = StopStrings(lm.tokenizer, stops, p) if stops else None
    process = Autoregressive(eos_token_id=eos, pad_token_id=lm.pad_token_id, greedy=greedy, stop=stopper)
    rows = batch["input_ids"].shape[0]
    if isinstance(grammar, CompiledGrammar):
        constraint = grammar.constraint(rows, lm.device, max_tokens=max_new_tokens)
    elif callable(grammar) and not isinstance(grammar, Constraint):
        constraint = grammar(lm, rows)
    else:
        constraint = grammar
    callback = None if on_step is None else (lambda i, state, pred: on_step(i, state))
    res = decode(
        lm.model, process, batch, steps=max_new_tokens, processors=procs, constraint=constraint,
        generator=generator, callback=callback, progress=progress,
    )
    return res, constraint


def _texts(
    lm: TextLM,
    prompts: Sequence[str],
    chunk: list[tuple[int, int]],
    batch: dict[str, Tensor],
    res: Result,
    stops: list[str],
    limited: list[bool],
) -> list[TextResult]:
    out = []
    prompt_lens = batch["attention_mask"].sum(-1).tolist()
    eos = set(lm.eos_token_ids)
    for r, (tokens, (i, j)) in enumerate(zip(generated_tokens(res.state), chunk, strict=True)):
        text, stopped = cut_at_stop(lm.decode(tokens), stops)
        reason = "stop" if stopped else ("eos" if tokens and tokens[-1] in eos else "length")
        out.append(
            TextResult(
                prompt=prompts[i], index=i, sample=j, text=text, tokens=tokens, prompt_tokens=int(prompt_lens[r]),
                new_tokens=len(tokens), finish_reason=reason, nfe=float(res.nfe[r]), seconds=res.seconds,
                budget_limited=bool(limited[r]),
            )
        )
    return out
