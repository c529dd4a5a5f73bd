"""``load`` / ``generate`` for any-subset autoregressive models (AS-ARM) with any-subset speculative decoding.

ASSD (arXiv 2504.20456) drafts up to ``speculative`` tokens per model call from the model's own
one-pass conditionals and verifies them against the sequential any-order chain, so its samples are
distributed exactly as sequential any-order sampling's (``speculative=0``); only NFE and time
differ. The prompt is an infill template (:mod:`decoding.api.templates`).
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
from decoding.nn.any_subset import AnySubsetLM
from decoding.processes.any_order import ORDERS, AnyOrder, parse_infill_prompt
from decoding.processes.assd import ASSD


def load_any_subset(source: Source, device: torch.device, dtype: torch.dtype | None) -> Handle:
    from decoding.data.tokenizer import TextTokenizer

    folder = Path(source.path)
    model = AnySubsetLM.from_pretrained(folder, device=device)
    if dtype is not None:
        model.net = model.net.to(dtype)
    tok_file = folder / source.card.get("tokenizer", "tokenizer.model")
    tok = TextTokenizer(tok_file if tok_file.is_file() else None)
    return Handle(model, source.name, source.card, device, "any-subset", tok)


def generate_any_subset(
    lm: Handle,
    prompt: str | None,
    run: Run,
    *,
    sampling: Sampling | dict | None = None,
    speculative: int | None = None,
    adaptive: bool | None = None,
    order: str | None = None,
    blank_tokens: int | None = None,
) -> Generation:
    """See :func:`decoding.generate`; ``prompt`` is an infill template (required)."""
    if template(lm.name, prompt) is None:
        raise OptionError(f"{lm.name} is an any-subset model: give an infill template, e.g. 'The ____ sat on the ____ .'")
    d = {"speculative": 4, "order": "left_to_right", **lm.card.get("defaults", {})}
    k = whole("speculative", d["speculative"] if speculative is None else speculative)
    adaptive = None if adaptive is None else flag("adaptive", adaptive)
    blank_tokens = None if blank_tokens is None else whole("blank_tokens", blank_tokens)
    order = str(d["order"] if order is None else order)
    if k < 0:
        raise OptionError(f"speculative must be >= 1 tokens per call (or 0 for sequential any-order sampling), got {k}")
    if order not in ORDERS:
        raise OptionError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if k == 0 and adaptive:
        raise OptionError("adaptive applies to speculative decoding: give speculative >= 1")
    samp = Sampling.coerce(sampling)
    ids, blank = parse_template(prompt, lm.tokenizer, lm.context, blank_tokens)
    process = AnyOrder(order=order) if k == 0 else ASSD(k=k, adaptive=bool(adaptive), order=order)
    generator = new_generator(run.seed, lm.device)
    rows, nfe, seconds = [], [], 0.0
    for _, b in run.chunks():
        x = torch.tensor(ids, dtype=torch.long, device=lm.device).expand(b, -1).contiguous()
        targets = torch.tensor(blank, dtype=torch.bool, device=lm.device).expand(b, -1).contiguous()
        infill = {"input_ids": x, "targets": targets}
        _, tgt, _ = parse_infill_prompt(infill, getattr(process, "mask_token_id", None))
        steps = max(int(tgt.sum(1).max()), 1)  # every call commits at least one target
        res = decode(lm.model, process, infill, steps=steps, processors=samp.processors(), generator=generator,
                     **run.decode_options())
        rows += res.x.tolist()
        nfe += res.nfe.tolist()
        seconds += res.seconds
    settings = {
        "prompt": prompt, "n": run.n, "seed": run.seed, "speculative": k, "adaptive": bool(adaptive), "order": order,
        "blank_tokens": blank_tokens, "sampling": samp.to_dict(), "batch_size": run.batch_size, "device": str(lm.device),
        "blank_count": int(sum(blank)), "torch": torch.__version__,
    }
    return Generation(
        kind=lm.kind, model=lm.name, text=[lm.tokenizer.decode(r) for r in rows], tokens=rows, nfe=nfe,
        finish_reason=["complete"] * run.n, seconds=seconds, settings=settings, prompt_index=[0] * run.n,
    )
