"""``/v1/images/generations`` for image diffusion models: a class label in, PNGs (``b64_json``) out.

``prompt`` names the class: its name in the model card's ``classes`` (case-insensitive), its number,
or nothing (unconditional samples); ``class_label`` gives the number directly. Extra fields choose
the sampler (``solver``, ``steps``, ``spacing``) and classifier-free guidance (``guidance``: its
scale). The images come from :func:`decoding.generate`, run on the model's thread.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import time
from typing import Any

from decoding.api import generate
from decoding.api.options import OptionError
from decoding.server.errors import APIError, bad_request
from decoding.server.schemas import ImageRequest


def class_of(handle: Any, req: ImageRequest) -> int | None:
    """The class the request asks for (None: unconditional)."""
    names = [str(c).lower() for c in getattr(handle, "classes", [])]
    from_prompt = None
    text = (req.prompt or "").strip()
    if text:
        if text.isascii() and text.isdigit():  # not int() of '²', which isdigit() also calls a digit
            from_prompt = int(text)
        elif text.lower() in names:
            from_prompt = names.index(text.lower())
        else:
            known = ", ".join(names) if names else "none (give the class number)"
            raise bad_request(f"prompt {text!r} names no class of {handle.name}; its classes: {known}", "prompt")
    if req.class_label is not None and from_prompt is not None and req.class_label != from_prompt:
        raise bad_request(f"prompt names class {from_prompt} but class_label is {req.class_label}", "class_label")
    return req.class_label if req.class_label is not None else from_prompt


def _png(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


async def generate_images(server: Any, req: ImageRequest) -> dict[str, Any]:
    """Answer an image request (run on the scheduler's thread, between text steps)."""
    handle, cfg = server.handle, server.config
    if req.response_format == "url":
        raise bad_request("response_format url is not supported (nothing is stored); use b64_json", "response_format")
    if req.n > cfg.max_images:
        raise bad_request(f"n must be <= {cfg.max_images} on this server", "n")
    size = handle.model.net.cfg.image_size
    if req.size is not None and req.size != f"{size}x{size}":
        raise bad_request(f"{handle.name} makes {size}x{size} images; omit size or give {size}x{size}", "size")
    label = class_of(handle, req)
    options = dict(class_label=label, steps=req.steps, solver=req.solver, spacing=req.spacing,
                   guidance=None if req.guidance is None else [f"cfg:{req.guidance}"])
    seed = req.seed if req.seed is not None else secrets.randbits(63)
    future = server.scheduler.run_task(lambda: generate(handle, n=req.n, seed=seed, **options))
    try:
        out = await asyncio.wrap_future(future)
    except OptionError as e:
        raise bad_request(str(e)) from None
    except Exception as e:
        raise APIError(500, f"image generation failed: {type(e).__name__}: {e}") from None
    return {"created": int(time.time()), "data": [{"b64_json": _png(img)} for img in out.pil_images()]}
