"""``generate`` for causal language models: sampling, stop strings, grammars, JSON Schema, ASAp.

Every sample goes through :func:`decoding.decode` with the autoregressive process, the model's KV
cache and the processors of :class:`~decoding.api.options.Sampling` in their documented order. A
grammar or JSON Schema becomes a token :class:`~decoding.core.protocols.Constraint` (with the
budget guard that closes every sample within ``max_new_tokens``, unless ``budget_close=False``);
``aligned=True`` samples with ASAp (arXiv 2405.21047) instead, whose trie can persist in a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.adapters.text_lm import TextLM
from decoding.api.generation import Generation
from decoding.api.options import OptionError, Sampling
from decoding.api.run import Run
from decoding.core.loop import decode
from decoding.core.types import State, new_generator
from decoding.grammar.compiled import CompiledGrammar
from decoding.processes.autoregressive import Autoregressive, generated_tokens

DEFAULT_MAX_NEW_TOKENS = 128


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


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of a growing ``text`` could still turn into a stop string or into a
    different character (an unfinished UTF-8 sequence decodes as U+FFFD): what a stream must not show yet."""
    hold = 0
    while hold < len(text) and text[len(text) - hold - 1] == "\ufffd":
        hold += 1
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return hold


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop string, and whether one was found."""
    hits = [text.find(s) for s in stops if s and s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def load_json_schema(schema: dict | str | Path) -> dict:
    """A JSON Schema from a dict (or the boolean schemas ``True`` / ``False``), JSON text, or a path to a ``.json`` file."""
    if isinstance(schema, dict | bool):
        return schema
    is_text = isinstance(schema, str) and (schema.lstrip().startswith(("{", "[")) or schema.strip() in ("true", "false"))
    if isinstance(schema, Path) or (isinstance(schema, str) and not is_text):
        path = Path(schema).expanduser()
        if not path.is_file():
            raise OptionError(f"json_schema: {path} is not a file (give a dict, JSON text or a path to a .json file)")
        schema = path.read_text(encoding="utf-8")
    try:
        out = json.loads(schema)
    except json.JSONDecodeError as e:
        raise OptionError(f"json_schema is not valid JSON: {e}") from None
    if not isinstance(out, dict | bool):
        raise OptionError(f"json_schema must be a JSON object (or true/false), got {type(out).__name__}")
    return out


def grammar_text(grammar: Any, json_schema: Any) -> tuple[str, str] | None:
    """``(lark source, display name)`` of the ``grammar`` or ``json_schema`` option, or None."""
    from decoding.grammar import grammar_source, json_schema_to_lark

    if grammar is not None and json_schema is not None:
        raise OptionError("give grammar or json_schema, not both")
    if json_schema is not None:
        schema = load_json_schema(json_schema)
        return json_schema_to_lark(schema), "json_schema:" + json.dumps(schema, sort_keys=True)[:200]
    if grammar is None or isinstance(grammar, CompiledGrammar):
        return None
    return grammar_source(grammar)


def compiled_grammar(lm: TextLM, grammar: Any, json_schema: Any) -> tuple[CompiledGrammar | None, str | None]:
    """The compiled constraint of the ``grammar`` / ``json_schema`` options and its lark source.

    Compilations are cached on ``lm`` (by grammar text), so repeated calls with one grammar
    compile it once.
    """
    if isinstance(grammar, CompiledGrammar):
        if json_schema is not None:
            raise OptionError("give grammar or json_schema, not both")
        return grammar, getattr(grammar.lark, "source_grammar", None) or grammar.name
    found = grammar_text(grammar, json_schema)
    if found is None:
        return None, None
    source, name = found
    cache: dict[str, CompiledGrammar] = lm.__dict__.setdefault("_grammar_cache", {})
    if source not in cache:
        from decoding.grammar import compile_grammar

        width = getattr(lm.model, "vocab_size", None)  # the logits may be wider than the tokenizer
        cache[source] = compile_grammar(source, lm.tokenizer, eos_token_id=lm.eos_token_ids[0], vocab_size=width,
                                        check_lexer=json_schema is None)  # a schema's oracle is the schema, not lark
        while len(cache) > 32:  # oldest first
            cache.pop(next(iter(cache)))
    return cache[source], source


def generate_causal(
    lm: TextLM,
    prompt: str | Sequence[str] | None,
    run: Run,
    *,
    max_new_tokens: int | None = None,
    sampling: Sampling | dict | None = None,
    stop: Sequence[str] | str | None = None,
    chat: bool | None = None,
    grammar: Any = None,
    json_schema: Any = None,
    aligned: Any = None,
    trie: str | Path | None = None,
    budget_close: bool | None = None,
) -> Generation:
    """See :func:`decoding.generate`; ``prompt`` is one prompt or a list."""
    if prompt is None:
        raise OptionError(f"{lm.name} is a causal LM: give a prompt (a string or a list of strings)")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise OptionError("prompt must be a string or a non-empty list of strings")
    max_new = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else int(max_new_tokens)
    if max_new < 1:
        raise OptionError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    samp = Sampling.coerce(sampling)
    stops = [s for s in ([stop] if isinstance(stop, str) else stop or []) if s]  # "" stops nothing
    if aligned is not None and aligned is not False:
        return _generate_aligned(lm, prompts, run, max_new, samp, stops, chat, grammar, json_schema, aligned,
                                 trie, budget_close)
    if trie is not None:
        raise OptionError("trie is the file of grammar-aligned decoding: give it with aligned=True")
    compiled, source = compiled_grammar(lm, grammar, json_schema)
    if compiled is None and budget_close is not None:
        raise OptionError("budget_close applies to grammar-constrained decoding: give grammar or json_schema")
    close = budget_close is not False
    procs = samp.processors()
    rows = [(i, j) for i in range(len(prompts)) for j in range(run.n)]
    generator = new_generator(run.seed, lm.device)
    texts, tokens, reasons, nfe, limited, index = [], [], [], [], [], []
    seconds = 0.0
    for lo, b in run.chunks(len(rows)):
        chunk = rows[lo : lo + b]
        batch = lm.encode([prompts[i] for i, _ in chunk], chat)
        p = batch["input_ids"].shape[1]
        if p + max_new > lm.max_context:
            raise OptionError(
                f"prompt ({p} tokens) + max_new_tokens ({max_new}) exceeds the context of {lm.name} "
                f"({lm.max_context} tokens); lower max_new_tokens or shorten the prompt"
            )
        if hasattr(lm.model, "capacity"):  # static KV cache: room for exactly this generation
            lm.model.capacity = p + max_new + 1
        constraint = None
        if compiled is not None:
            constraint = compiled.constraint(len(chunk), lm.device, max_tokens=max_new if close else None)
        process = Autoregressive(
            eos_token_id=list(lm.eos_token_ids) or None, pad_token_id=lm.pad_token_id, greedy=samp.greedy,
            stop=StopStrings(lm.tokenizer, stops, p) if stops else None,
        )
        res = decode(lm.model, process, batch, steps=max_new, processors=procs, constraint=constraint,
                     generator=generator, **run.decode_options())
        seconds += res.seconds
        flags = getattr(constraint, "limited", None) or [False] * len(chunk)
        for r, (ids, (i, _)) in enumerate(zip(generated_tokens(res.state), chunk, strict=True)):
            text, stopped = cut_at_stop(lm.decode(ids), stops)
            texts.append(text)
            tokens.append(ids)
            reasons.append("stop" if stopped else ("eos" if ids and ids[-1] in lm.eos_token_ids else "length"))
            nfe.append(float(res.nfe[r]))
            limited.append(bool(flags[r]))
            index.append(i)
    settings = _settings(lm, prompts, run, max_new, samp, stops, chat, grammar, json_schema)
    settings["budget_close"] = close if compiled is not None else None
    info = {"budget_limited": limited} if compiled is not None else {}
    return Generation(
        kind="causal-lm", model=lm.name, text=texts, tokens=tokens, nfe=nfe, finish_reason=reasons,
        seconds=seconds, settings=settings, prompt_index=index, info=info,
    )


def trie_signature(model_name: str, grammar_source: str, sampling: Sampling) -> str:
    """The text that ties a trie file to one distribution: model, grammar (hashed) and sampling."""
    import hashlib

    digest = hashlib.sha256(grammar_source.encode("utf-8")).hexdigest()[:16]
    return f"model={model_name};grammar_sha256={digest};sampling={json.dumps(sampling.to_dict(), sort_keys=True)}"


def _generate_aligned(
    lm: TextLM, prompts: list[str], run: Run, max_new: int, samp: Sampling, stops: list[str], chat: bool | None,
    grammar: Any, json_schema: Any, aligned: Any, trie: str | Path | None, budget_close: bool | None,
) -> Generation:
    """ASAp samples of every prompt, ``batch_size`` rows per decode call (default 1, the paper's algorithm)."""
    from decoding.aligned import ASAp, generate_aligned

    if budget_close:
        raise OptionError("budget_close does not apply with aligned=True: ASAp's estimates assume the grammar's own mask")
    if stops:
        raise OptionError("stop strings do not apply with aligned=True: a sample ends where the grammar lets it end")
    if samp.greedy:
        raise OptionError("sampling.greedy does not apply with aligned=True: ASAp samples")
    compiled, source = compiled_grammar(lm, grammar, json_schema)
    if compiled is None:
        raise OptionError("aligned=True (grammar-aligned decoding) needs a grammar or a json_schema")
    eos = tuple(lm.eos_token_ids)
    if not eos:
        raise OptionError(f"model {lm.name} has no EOS token; grammar-aligned decoding needs one")
    signature = trie_signature(lm.name, source or "", samp)
    path = None if trie is None else Path(trie)
    if isinstance(aligned, ASAp):
        asap = aligned
    elif aligned is True:
        asap = ASAp.load(path, signature=signature, eos_token_id=eos) if path is not None and path.exists() else ASAp(
            eos, signature=signature
        )
    else:
        raise OptionError(f"aligned must be True or a decoding.aligned.ASAp, got {aligned!r}")
    generator = new_generator(run.seed, lm.device)
    texts, tokens, reasons, nfe, index = [], [], [], [], []
    seconds = 0.0
    for i, prompt in enumerate(prompts):
        ids = lm.encode([prompt], chat)["input_ids"][0]
        if ids.numel() + max_new > lm.max_context:
            raise OptionError(f"prompt {i} ({ids.numel()} tokens) + max_new_tokens ({max_new}) exceeds the context of {lm.name}")
        if hasattr(lm.model, "capacity"):
            lm.model.capacity = ids.numel() + max_new + 1
        out = generate_aligned(
            lm.model, lambda b: compiled.constraint(batch_size=b, device=lm.device), ids, num_samples=run.n,
            max_new_tokens=max_new, eos_token_id=eos, batch_size=run.batch_size or 1, processors=samp.processors(),
            pad_token_id=lm.pad_token_id, trie=asap, generator=generator, progress=run.progress,
        )
        for seq, done in zip(out.sequences, out.complete, strict=True):
            texts.append(lm.decode(seq))
            tokens.append(seq)
            reasons.append("eos" if done else "length")
            nfe.append(float(len(seq)))
            index.append(i)
        seconds += out.seconds
    if path is not None:
        asap.save(path)
    settings = _settings(lm, prompts, run, max_new, samp, stops, chat, grammar, json_schema)
    settings.update(aligned=True, trie=None if path is None else str(path), trie_samples=asap.samples)
    return Generation(
        kind="causal-lm", model=lm.name, text=texts, tokens=tokens, nfe=nfe, finish_reason=reasons,
        seconds=seconds, settings=settings, prompt_index=index,
    )


def _settings(
    lm: TextLM, prompts: list[str], run: Run, max_new: int, samp: Sampling, stops: list[str], chat: bool | None,
    grammar: Any, json_schema: Any,
) -> dict[str, Any]:
    return {
        "prompts": prompts, "n": run.n, "seed": run.seed, "max_new_tokens": max_new, "sampling": samp.to_dict(),
        "stop": stops, "chat": chat, "grammar": grammar if isinstance(grammar, str | None) else repr(grammar),
        "json_schema": load_json_schema(json_schema) if json_schema is not None else None, "batch_size": run.batch_size,
        "engine": lm.engine, "device": str(lm.device), "dtype": str(lm.dtype).removeprefix("torch."),
        "torch": torch.__version__,
    }
