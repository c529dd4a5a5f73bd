"""Python API behind ``decoding text --model <radd model> --steps N --sampler tweedie [--no-cache] [--infill T]``.

:func:`generate_masked` samples text from a RADD model folder (``models/radd-<name>``; arXiv:2406.03736)
with the masked process (:class:`decoding.processes.masked.Masked`) and, unless ``cache=False``,
RADD's exact output cache (:class:`decoding.wrappers.cache.CachedModel`: same samples, fewer
network calls). Without a template it samples ``num_samples`` unconditional sequences of
``length`` tokens (default: the model's context).

Infill template syntax (the same as the AS-ARM API): every run of two or more underscores is a
blank of as many tokens as it has underscores (``"____"`` = 4 tokens), or of ``blank_tokens``
tokens when that is given; the text between blanks is encoded segment by segment. Given tokens
never change. The template must fit the model's context.

CLI wiring (in ``decoding/cli/text.py``, by its owner): when ``config.json`` of ``--model`` has
``model_type == "radd"`` (:func:`is_radd_model`), call :func:`generate_masked` with ``--steps``
(default 128), ``--sampler`` (``tweedie``, ``euler``, ``exact_rate``, ``any_order``), ``--noise``
(``loglinear``, ``cosine``, ``poly:K``), ``cache = not --no-cache``, ``--infill``, ``--n`` as
``num_samples``, ``--temperature``, ``--seed``, ``--device``; print ``result["texts"]`` and, on
stderr, ``result["nfe"]`` and ``result["seconds"]``. ``ValueError`` carries a one-line message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from decoding.core.loop import decode
from decoding.nn.radd import RADDModel, load_radd
from decoding.processes.masked import SAMPLERS, Masked
from decoding.processors.temperature import Temperature
from decoding.wrappers.cache import CachedModel

_BLANK = re.compile(r"_{2,}")


def is_radd_model(path: str | Path) -> bool:
    """True when ``path`` is a folder whose ``config.json`` says ``model_type: radd``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "radd"
    except json.JSONDecodeError:
        return False


def load_radd_folder(path: str | Path, device: str | torch.device = "cpu") -> tuple[RADDModel, Any, dict[str, Any]]:
    """``(model, tokenizer, config)`` of a RADD folder (tokenizer: :class:`decoding.data.tokenizer.TextTokenizer`)."""
    from decoding.data.tokenizer import TextTokenizer

    folder = Path(path)
    if not is_radd_model(folder):
        raise ValueError(f"{folder} is not a RADD model folder (config.json with model_type 'radd')")
    cfg = json.loads((folder / "config.json").read_text())
    tok_file = folder / cfg.get("tokenizer", "tokenizer.model")
    tok = TextTokenizer(tok_file if tok_file.is_file() else None)
    if tok.vocab_size != cfg["vocab_size"]:
        raise ValueError(f"{folder}: tokenizer has {tok.vocab_size} pieces but the model expects {cfg['vocab_size']}")
    return RADDModel(load_radd(folder, device=device)), tok, cfg


def infill_template(text: str, tokenizer: Any, mask_id: int, max_len: int, blank_tokens: int | None = None) -> list[int]:
    """Token ids of an infill template, ``mask_id`` at the blanks.

    Raises:
        ValueError: no blank, ``blank_tokens < 1``, or longer than ``max_len`` tokens.
    """
    if blank_tokens is not None and blank_tokens < 1:
        raise ValueError(f"blank_tokens must be >= 1, got {blank_tokens}")
    if not _BLANK.search(text):
        raise ValueError(f"infill template {text!r} has no blank: write a run of underscores (e.g. ____) where text goes")
    ids: list[int] = []
    pos = 0
    for m in _BLANK.finditer(text):
        seg = text[pos : m.start()].strip()
        if seg:
            ids += tokenizer.encode(seg)
        ids += [mask_id] * (blank_tokens if blank_tokens is not None else len(m.group()))
        pos = m.end()
    seg = text[pos:].strip()
    if seg:
        ids += tokenizer.encode(seg)
    if len(ids) > max_len:
        raise ValueError(f"the infill template is {len(ids)} tokens long, more than the model's context of {max_len}; shorten it")
    return ids


def generate_masked(
    model: str | Path,
    *,
    steps: int = 128,
    sampler: str = "tweedie",
    noise: str = "loglinear",
    cache: bool = True,
    infill: str | None = None,
    blank_tokens: int | None = None,
    num_samples: int = 1,
    length: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Sample (or infill) text with a RADD model.

    Args:
        model: RADD folder (``models/radd-<name>``).
        steps: sampling steps (``>= 1``; the any-order sampler fills one position per step when
            ``steps`` equals the number of blanks).
        sampler: ``"tweedie"``, ``"euler"``, ``"exact_rate"`` or ``"any_order"``.
        noise: ``"loglinear"``, ``"cosine"`` or ``"poly:K"``.
        cache: reuse the network's output for rows that did not change (exact; RADD).
        infill: a template with blanks (see the module docstring); ``None``: unconditional.
        blank_tokens: tokens per blank (default: the number of underscores).
        num_samples: independent samples (one batch).
        length: unconditional sequence length (default: the model's context).
        temperature: divides the logits (1 = the model's distribution).
        seed, device: random seed and torch device.

    Returns:
        ``{"texts": [str], "token_ids": [[int]], "nfe": [float] per sample, "steps": int,
        "seconds": float, "sampler": str, "cache": bool}``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    net, tok, cfg = load_radd_folder(model, device=device)
    ctx = int(cfg.get("seq_len", net.max_length))
    if infill is not None:
        ids = infill_template(infill, tok, net.mask_id, ctx, blank_tokens)
        prompt: Any = torch.tensor(ids, dtype=torch.long, device=device).expand(num_samples, -1).contiguous()
    else:
        n = ctx if length is None else int(length)
        if not 1 <= n <= ctx:
            raise ValueError(f"length must lie in [1, {ctx}] (the model's context), got {length}")
        prompt = torch.full((num_samples, n), net.mask_id, dtype=torch.long, device=device)
    process = Masked(mask_id=net.mask_id, sampler=sampler, noise=noise, max_length=ctx)
    m = CachedModel(net) if cache else net
    procs = [] if temperature == 1.0 else [Temperature(temperature)]
    gen = torch.Generator(device=device).manual_seed(int(seed))
    res = decode(m, process, prompt, steps=steps, processors=procs, generator=gen, progress=progress)
    rows = res.x.tolist()
    return {
        "texts": [tok.decode(r) for r in rows],
        "token_ids": rows,
        "nfe": res.nfe.tolist(),
        "steps": res.steps,
        "seconds": res.seconds,
        "sampler": sampler,
        "cache": cache,
    }

