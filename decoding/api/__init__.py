"""The public face of the engine: :func:`load`, :func:`generate` and their :class:`Generation`.

>>> import decoding as dc
>>> lm = dc.load("smollm2")
>>> out = dc.generate(lm, "Describe a cat as JSON.", n=2, grammar="json", seed=0)
>>> out.text, out.nfe, out.finish_reason
>>> img = dc.generate(dc.load("fashion-large"), class_label=7, n=16, guidance=[dc.CFG(2.0)], seed=0)
>>> img.grid().save("sneakers.png")

``load`` reads the model card (``config.json``) to learn the model's kind; ``generate`` checks the
options against that kind (one that does not apply is an :class:`OptionError` naming both), builds
the process, wrappers, processors and constraint, and calls :func:`decoding.decode`. The CLI, the
server, the eval suites and the examples are shells over these two functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from decoding.api.generation import Generation
from decoding.api.options import KIND_OPTIONS, OptionError, Sampling, check_options
from decoding.api.run import Run
from decoding.api.zoo import KINDS, ModelNotFoundError, resolve, zoo_names
from decoding.core.types import State

__all__ = [
    "KINDS",
    "Generation",
    "ModelNotFoundError",
    "OptionError",
    "Sampling",
    "generate",
    "load",
    "resolve_device",
    "zoo_names",
]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device the engine runs on: the CPU or a CUDA GPU (None: CUDA when available, else the
    CPU). A name torch does not know, another device type (``meta``, ``mps``, ...) or CUDA on a machine without it is an
    :class:`OptionError` saying what to pass instead."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"device {device}: not a device name torch knows; use 'cpu' or 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise OptionError(f"device {device}: decoding runs on the CPU or a CUDA GPU, not on {dev.type!r}; "
                          "use 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device}: CUDA is not available on this machine; use device='cpu'")
    return dev


def load(
    name_or_path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    engine: str | None = None,
) -> Any:
    """Load a model for :func:`generate`.

    Args:
        name_or_path: a zoo name (``"smollm2"``, ``"fashion-large"``, ``"radd-brown"``,
            ``"as-arm-brown"``, ... see :func:`zoo_names`), a model folder with a ``config.json``
            card, a Hugging Face causal-LM folder, or a ``.gguf`` file.
        device: torch device (default: CUDA when available, else the CPU).
        dtype: weights' dtype (default: the kind's choice, e.g. bfloat16 on CUDA for causal LMs).
        engine: causal LMs only: ``"native"`` (our Llama with a static KV cache and CUDA graphs),
            ``"fused"`` (native, with the one-token step of up to 8 rows as fused Triton kernels;
            CUDA with triton), ``"hf"`` (any transformers causal LM) or ``"auto"`` (default:
            native when it can).

    Returns:
        A handle with ``.kind``, ``.name`` and ``.device`` (and the kind's parts: tokenizer, card...).

    Raises:
        ModelNotFoundError: no such model (the message lists the zoo).
        ValueError: a card without a known kind, or a kind that does not generate.
    """
    source = resolve(name_or_path)
    dev = resolve_device(device)
    if engine is not None and source.kind != "causal-lm":
        raise OptionError(f"option 'engine' does not apply to {source.kind} models like {source.name}")
    if source.kind == "causal-lm":
        from decoding.adapters.text_lm import load_text_lm

        where = source.path if source.path is not None else source.name
        lm = load_text_lm(where, device=dev, dtype=dtype, engine=engine or "auto")
        lm.name = source.name
        return lm
    torch_dtype = _dtype(dtype)
    if source.kind == "masked-diffusion":
        from decoding.api.masked import load_masked

        return load_masked(source, dev, torch_dtype)
    if source.kind == "any-subset":
        from decoding.api.any_subset import load_any_subset

        return load_any_subset(source, dev, torch_dtype)
    if source.kind == "image-diffusion":
        from decoding.api.image import load_image

        return load_image(source, dev, torch_dtype)
    if source.kind == "distilled-diffusion":
        from decoding.api.distilled import load_distilled

        return load_distilled(source, dev, torch_dtype)
    if source.kind in ("image-ar", "image-ar-dd"):
        from decoding.api.image_ar import load_image_ar
        from decoding.api.image_ar_dd import load_image_ar_dd

        return (load_image_ar if source.kind == "image-ar" else load_image_ar_dd)(source, dev, torch_dtype)
    raise ValueError(
        f"{source.name} is a {source.kind} model: it does not generate (see decoding.evals for how it is used)"
    )


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise OptionError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return value


def generate(
    model: Any,
    prompt: str | Sequence[str] | None = None,
    *,
    n: int = 1,
    seed: int | None = 0,
    max_new_tokens: int | None = None,
    steps: int | None = None,
    sampling: Sampling | dict | None = None,
    stop: str | Sequence[str] | None = None,
    chat: bool | None = None,
    grammar: Any = None,
    json_schema: Any = None,
    aligned: Any = None,
    trie: str | Path | None = None,
    budget_close: bool | None = None,
    sampler: str | None = None,
    noise: str | None = None,
    cache: bool | None = None,
    length: int | None = None,
    blank_tokens: int | None = None,
    speculative: int | None = None,
    adaptive: bool | None = None,
    order: str | None = None,
    class_label: Any = None,
    solver: str | None = None,
    spacing: str | None = None,
    guidance: Sequence[Any] | None = None,
    solver_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    on_step: Callable[[int, State], None] | None = None,
    progress: bool = False,
    sync_every: int | None = None,
) -> Generation:
    """Generate with any model :func:`load` returns (or a name, loaded with defaults).

    Common options:
        prompt: causal LM: a string or a list (``n`` samples each); masked / any-subset models: an
            infill template with ``____`` blanks (masked models: None samples unconditionally);
            image models: None.
        n: samples (per prompt). seed: random seed (same seed, device and options -> same output;
            None: random). batch_size: rows per decode call. on_step: ``on_step(i, state)`` after
            every step (streaming). progress: a tqdm bar. sync_every: steps between the host's
            looks at the device (see :func:`decoding.decode`).

    Causal LMs: ``max_new_tokens`` (128), ``sampling`` (:class:`Sampling`), ``stop`` strings,
    ``chat`` (wrap in the chat template; default: when the model has one), ``grammar`` (a built-in
    name, a ``.lark`` path, lark text or a compiled grammar), ``json_schema`` (a dict, JSON text or
    a path), ``budget_close`` (default True with a grammar: every sample finishes as a sentence
    within ``max_new_tokens``), ``aligned`` (True or an ``ASAp`` object: grammar-aligned decoding,
    arXiv 2405.21047) and ``trie`` (its file, loaded and saved).

    Masked diffusion (RADD, arXiv 2406.03736): ``steps`` (128), ``sampler`` (tweedie, euler,
    exact_rate, any_order), ``noise`` (loglinear, cosine, poly:K), ``cache`` (True: the exact
    RADD cache), ``length`` (unconditional), ``blank_tokens``, ``sampling`` (temperature).

    Any-subset AR (arXiv 2504.20456): ``speculative`` (tokens per call for ASSD, 4; 0 = sequential
    any-order), ``adaptive``, ``order`` (left_to_right, random), ``blank_tokens``, ``sampling``
    (temperature).

    Image diffusion: ``class_label`` (one, one per image, or None = unconditional), ``solver``
    (dpmpp_2m), ``steps`` (10), ``spacing`` (time, logsnr, karras, logsnr_trunc; by default the
    grid measured best for the solver, :func:`decoding.solvers.timesteps.default_spacing`),
    ``guidance`` (a list of wrappers such as ``decoding.CFG(2.0)`` or ``"cfg:2"``), ``solver_options``
    (DPM-Solver-v3's statistics and DC-Solver's ratios are read from the model's folder).

    Guidance-distilled students (arXiv 2210.03142, :mod:`decoding.api.distilled`): ``class_label``,
    ``guidance`` (one CFG scale, e.g. ``"cfg:1.5"``: an input of the student, one call per step),
    ``steps`` (an N-step student takes exactly N) and ``sampler`` (deterministic, stochastic), or
    for a stage-1 student ``solver`` and ``spacing``.

    Image AR models (``image-ar``, :mod:`decoding.api.image_ar`): ``class_label``, ``guidance``
    (one CFG scale), ``sampler`` (ancestral, flow = the Distilled Decoding noise map, one-pass) and
    ``sampling``. Distilled Decoding students (``image-ar-dd``, arXiv 2412.17153): ``class_label``
    and ``steps`` (1 or 2).

    Defaults in parentheses may be overridden by the model card's ``"defaults"``.

    Raises:
        OptionError: an option that does not apply to the model's kind (named with the kind), or
            a value out of range.
    """
    if isinstance(model, str | Path):
        model = load(model)
    kind = getattr(model, "kind", None)
    if kind not in KIND_OPTIONS:
        raise OptionError(f"generate() needs a model from decoding.load(), got {type(model).__name__}")
    options = dict(
        max_new_tokens=max_new_tokens, steps=steps, sampling=sampling, stop=stop, chat=chat, grammar=grammar,
        json_schema=json_schema, aligned=aligned, trie=trie, budget_close=budget_close, sampler=sampler, noise=noise,
        cache=cache, length=length, blank_tokens=blank_tokens, speculative=speculative, adaptive=adaptive,
        order=order, class_label=class_label, solver=solver, spacing=spacing, guidance=guidance,
        solver_options=solver_options,
    )
    check_options(kind, model.name, options)
    given = {k: v for k, v in options.items() if v is not None}
    run = Run(n=n, seed=seed, batch_size=batch_size, on_step=on_step, progress=progress, sync_every=sync_every)
    if kind == "causal-lm":
        from decoding.api.causal_lm import generate_causal

        return generate_causal(model, prompt, run, **given)
    if kind == "masked-diffusion":
        from decoding.api.masked import generate_masked

        return generate_masked(model, prompt, run, **given)
    if kind == "any-subset":
        from decoding.api.any_subset import generate_any_subset

        return generate_any_subset(model, prompt, run, **given)
    if kind == "distilled-diffusion":
        from decoding.api.distilled import generate_distilled

        return generate_distilled(model, prompt, run, **given)
    if kind in ("image-ar", "image-ar-dd"):
        from decoding.api.image_ar import generate_image_ar
        from decoding.api.image_ar_dd import generate_image_ar_dd

        return (generate_image_ar if kind == "image-ar" else generate_image_ar_dd)(model, prompt, run, **given)
    from decoding.api.image import generate_image

    return generate_image(model, prompt, run, **given)


