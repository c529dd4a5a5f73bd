"""Python API behind ``decoding text --model <as-arm model> --assd-k 4 --infill "The ____ sat on the ____ ."``.

Template syntax: every run of two or more underscores is a blank of as many tokens as it has underscores
(``"____"`` = 4 tokens), or of ``blank_tokens`` tokens when that is given. The text between blanks is
encoded segment by segment (SentencePiece marks each segment's start as a word start), so blanks sit
between words. The template (text + blanks) must fit the model's context (``config.json`` ``seq_len``).

Sampling: :class:`~decoding.processes.assd.ASSD` (``k >= 1`` tokens per model call at most, optional
adaptive ``k``) or, with ``k=None``, sequential any-order sampling (:class:`~decoding.processes.any_order.AnyOrder`);
both sample the model's joint exactly (arXiv 2504.20456), so only NFE and time differ.

CLI wiring (done in ``decoding/cli/text.py`` by its owner): when ``config.json`` of ``--model`` has
``model_type == "as-arm"`` (:func:`is_as_arm_model`), call :func:`assd_infill` with ``--infill``,
``--assd-k`` (``0`` = sequential), ``--assd-adaptive``, ``--order``, ``--temperature``, ``--num-samples``,
``--seed`` and ``--device``; print ``result["texts"]`` and, on stderr, NFE and seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from decoding.nn.any_subset import AnySubsetLM
from decoding.processes.any_order import AnyOrder, infill
from decoding.processes.assd import ASSD
from decoding.processors.temperature import Temperature

_BLANK = re.compile(r"_{2,}")


def is_as_arm_model(path: str | Path) -> bool:
    """True when ``path`` is a model folder whose ``config.json`` says ``model_type: as-arm``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "as-arm"
    except json.JSONDecodeError:
        return False


def load_as_arm(path: str | Path, device: str | torch.device = "cpu") -> tuple[AnySubsetLM, Any, dict]:
    """``(model, tokenizer, config)`` of an AS-ARM folder (tokenizer: ``decoding.data.tokenizer.TextTokenizer``)."""
    from decoding.data.tokenizer import TextTokenizer

    folder = Path(path)
    if not is_as_arm_model(folder):
        raise ValueError(f"{folder} is not an AS-ARM model folder (config.json with model_type 'as-arm')")
    model = AnySubsetLM.from_pretrained(folder, device=device)
    cfg = json.loads((folder / "config.json").read_text())
    tok_file = folder / cfg.get("tokenizer", "tokenizer.model")
    return model, TextTokenizer(tok_file if tok_file.is_file() else None), cfg


def parse_infill_template(template: str, tokenizer: Any, max_len: int, blank_tokens: int | None = None) -> tuple[list[int], list[bool]]:
    """``(ids, is_blank)`` of a template; blank ids are 0 (placeholders).

    Raises:
        ValueError: no blank, an empty template, or more tokens than ``max_len``.
    """
    if blank_tokens is not None and blank_tokens < 1:
        raise ValueError(f"blank_tokens must be >= 1, got {blank_tokens}")
    if not _BLANK.search(template):
        raise ValueError(f"infill template {template!r} has no blank: write a run of underscores (e.g. ____) where text goes")
    ids: list[int] = []
    blank: list[bool] = []
    pos = 0
    for m in _BLANK.finditer(template):
        seg = template[pos : m.start()].strip()
        if seg:
            enc = tokenizer.encode(seg)
            ids += enc
            blank += [False] * len(enc)
        n = blank_tokens if blank_tokens is not None else len(m.group())
        ids += [0] * n
        blank += [True] * n
        pos = m.end()
    seg = template[pos:].strip()
    if seg:
        enc = tokenizer.encode(seg)
        ids += enc
        blank += [False] * len(enc)
    if len(ids) > max_len:
        raise ValueError(f"the infill template is {len(ids)} tokens long, more than the model's context of {max_len}; shorten it")
    return ids, blank


def assd_infill(
    model: str | Path,
    template: str,
    *,
    k: int | None = 4,
    adaptive: bool = False,
    order: str = "left_to_right",
    temperature: float = 1.0,
    num_samples: int = 1,
    blank_tokens: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Fill the blanks of ``template`` with an AS-ARM.

    Args:
        model: AS-ARM folder (``models/as-arm-<name>``).
        template: text with blanks (runs of ``_``; see the module docstring).
        k: most tokens per model call for ASSD (``>= 1``); ``None`` or ``0``: sequential any-order sampling.
        adaptive: adapt ``k`` per row (ASSD only).
        order: ``"left_to_right"`` or ``"random"`` over the blanks.
        temperature: applied to every conditional (drafts and chain alike, so ASSD stays exact for it).
        num_samples: independent fills (one batch).
        blank_tokens: tokens per blank (default: the number of underscores).
        seed, device: random seed and torch device.

    Returns:
        ``{"texts": [str] * num_samples, "nfe": [float], "tokens": int (blank tokens per sample),
        "seconds": float, "method": "assd" | "sequential", "k": k}``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    net, tok, cfg = load_as_arm(model, device=device)
    ids, blank = parse_infill_template(template, tok, int(cfg.get("seq_len", net.net.max_len)), blank_tokens)
    x = torch.tensor(ids, dtype=torch.long, device=device).expand(num_samples, -1).contiguous()
    targets = torch.tensor(blank, dtype=torch.bool, device=device).expand(num_samples, -1).contiguous()
    sequential = k is None or k == 0
    process = AnyOrder(order=order) if sequential else ASSD(k=int(k), adaptive=adaptive, order=order)
    procs = [] if temperature == 1.0 else [Temperature(temperature)]
    res = infill(net, process, {"input_ids": x, "targets": targets}, processors=procs, seed=seed)
    texts = [tok.decode(row.tolist()) for row in res.x]
    return {
        "texts": texts,
        "nfe": res.nfe.tolist(),
        "tokens": int(targets[0].sum()),
        "seconds": res.seconds,
        "method": "sequential" if sequential else "assd",
        "k": None if sequential else int(k),
    }
