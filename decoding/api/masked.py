"""``load`` / ``generate`` for absorbing discrete diffusion LMs (RADD, arXiv 2406.03736).

Sampling runs the masked process (:class:`decoding.processes.masked.Masked`) through
:func:`decoding.decode`, by default with RADD's exact output cache
(:class:`decoding.wrappers.cache.CachedModel`: the same samples, fewer network calls). Without a
prompt it samples ``length`` tokens unconditionally; with an infill template
(:mod:`decoding.api.templates`) it fills the blanks.
"""

from __future__ import annotations

from pathlib import Path

import torch

from decoding.api.generation import Generation
from decoding.api.options import OptionError, Sampling, flag, template, whole
from decoding.api.run import Run
from decoding.api.templates import parse_template
from decoding.api.zoo import Handle, Source
from decoding.core.loop import decode
from decoding.core.types import new_generator
from decoding.nn.radd import RADDModel, load_radd
from decoding.processes.masked import SAMPLERS, Masked
from decoding.wrappers.cache import CachedModel


def load_masked(source: Source, device: torch.device, dtype: torch.dtype | None) -> Handle:
    from decoding.data.tokenizer import TextTokenizer

    folder = Path(source.path)
    net = load_radd(folder, device=device)
    if dtype is not None:
        net = net.to(dtype)
    tok_file = folder / source.card.get("tokenizer", "tokenizer.model")
    tok = TextTokenizer(tok_file if tok_file.is_file() else None)
    if tok.vocab_size != source.card["vocab_size"]:
        raise ValueError(f"{folder}: tokenizer has {tok.vocab_size} pieces but the model expects {source.card['vocab_size']}")
    return Handle(RADDModel(net), source.name, source.card, device, "masked-diffusion", tok)


def generate_masked(
    lm: Handle,
    prompt: str | None,
    run: Run,
    *,
    steps: int | None = None,
    sampling: Sampling | dict | None = None,
    sampler: str | None = None,
    noise: str | None = None,
    cache: bool | None = None,
    length: int | None = None,
    blank_tokens: int | None = None,
) -> Generation:
    """See :func:`decoding.generate`; ``prompt`` is an infill template or None (unconditional)."""
    d = {"steps": 128, "sampler": "tweedie", "noise": "loglinear", "cache": True, **lm.card.get("defaults", {})}
    prompt = template(lm.name, prompt)
    steps = whole("steps", d["steps"] if steps is None else steps)
    sampler = str(d["sampler"] if sampler is None else sampler)
    noise = str(d["noise"] if noise is None else noise)
    cache = flag("cache", d["cache"] if cache is None else cache)
    blank_tokens = None if blank_tokens is None else whole("blank_tokens", blank_tokens)
    length = None if length is None else whole("length", length)
    if steps < 1:
        raise OptionError(f"steps must be >= 1, got {steps}")
    if sampler not in SAMPLERS:
        raise OptionError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    samp = Sampling.coerce(sampling)
    ctx, dev = lm.context, lm.device
    if prompt is not None:
        if length is not None:
            raise OptionError("length applies to unconditional samples; an infill template sets its own length")
        ids, blank = parse_template(prompt, lm.tokenizer, ctx, blank_tokens)
        row = torch.tensor(ids, dtype=torch.long)
        row[torch.tensor(blank)] = lm.model.mask_id
    else:
        if blank_tokens is not None:
            raise OptionError("blank_tokens applies to infill templates: give a prompt with ____ blanks")
        size = ctx if length is None else int(length)
        if not 1 <= size <= ctx:
            raise OptionError(f"length must lie in [1, {ctx}] (the model's context), got {length}")
        row = torch.full((size,), lm.model.mask_id, dtype=torch.long)
    process = Masked(mask_id=lm.model.mask_id, sampler=sampler, noise=noise, max_length=ctx)
    model = CachedModel(lm.model) if cache else lm.model
    generator = new_generator(run.seed, dev)
    rows, nfe, seconds = [], [], 0.0
    for _, b in run.chunks():
        x = row.to(dev).expand(b, -1).contiguous()
        res = decode(model, process, x, steps=steps, processors=samp.processors(), generator=generator,
                     **run.decode_options())
        rows += res.x.tolist()
        nfe += res.nfe.tolist()
        seconds += res.seconds
    settings = {
        "prompt": prompt, "n": run.n, "seed": run.seed, "steps": steps, "sampler": sampler, "noise": noise, "cache": cache,
        "length": len(row), "blank_tokens": blank_tokens, "sampling": samp.to_dict(), "batch_size": run.batch_size,
        "device": str(dev), "torch": torch.__version__,
    }
    return Generation(
        kind=lm.kind, model=lm.name, text=[lm.tokenizer.decode(r) for r in rows], tokens=rows, nfe=nfe,
        finish_reason=["complete"] * run.n, seconds=seconds, settings=settings, prompt_index=[0] * run.n,
    )
