"""``load`` / ``generate`` for image AR models (kind ``image-ar``): a VQ tokenizer and a class-conditional token transformer.

The card (``config.json``) holds ``"ar"`` (the transformer's sizes), ``"tokenizer"`` (the VQ
folder: ``{"name": ZOO_NAME, "path": PATH}``, looked up as a sibling folder of that name, then as a
zoo name, then as the path), ``"classes"`` and ``"defaults"`` (e.g. ``{"guidance": "cfg:1.5"}``).

Samplers (``sampler=``), all through :func:`decoding.decode`:

- ``ancestral`` (default): the autoregressive process, one token per step with the KV cache,
  sampled from the (processed) next-token distribution; ``sampling`` takes temperature, top-k/p, min-p;
- ``flow``: the Distilled Decoding map (arXiv 2412.17153): each token is the end of the per-token
  flow of its own Gaussian noise vector (:class:`~decoding.dd.process.FlowTokens`); the noise
  ``(n, L, D)`` is the first draw of the generator seeded with ``seed``, as for ``image-ar-dd``
  students, so a student and its teacher map the same noise;
- ``one-pass``: the naive baseline, every token at once from one teacher pass (:mod:`decoding.dd.naive`).

``guidance`` takes one plain CFG scale (``"cfg:1.5"`` or ``decoding.CFG(1.5)``; 1 = conditional).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.adapters.hf import parse_dtype
from decoding.api.generation import Generation
from decoding.api.image import labels_for, parse_guidance
from decoding.api.options import OptionError, Sampling
from decoding.api.run import Run
from decoding.api.zoo import Handle, Source, models_root
from decoding.core.loop import decode
from decoding.core.types import new_generator
from decoding.dd.naive import OnePass, OnePassModel
from decoding.dd.process import FlowTokens
from decoding.models.ar_image import ARImageModel, class_tokens, load_ar_net
from decoding.models.vq import VQAutoencoder, load_vq
from decoding.processes.autoregressive import Autoregressive
from decoding.wrappers.guidance import CFG

SAMPLERS = ("ancestral", "flow", "one-pass")


@dataclass
class ARHandle(Handle):
    """A loaded image AR model: the engine model (:class:`~decoding.models.ar_image.ARImageModel`), its VQ tokenizer, its card."""

    vq: VQAutoencoder | None = None
    kind: str = field(default="image-ar", init=False)


def tokenizer_folder(card: dict[str, Any], folder: Path | None) -> Path:
    """The VQ tokenizer folder a card names (sibling folder, zoo name, then path)."""
    ref = card.get("tokenizer")
    if not isinstance(ref, dict) or not ({"name", "path"} & set(ref)):
        raise ValueError("the card has no 'tokenizer' entry ({\"name\": ZOO_NAME, \"path\": FOLDER}) naming its VQ tokenizer")
    tried = []
    name, path = ref.get("name"), ref.get("path")
    if name:
        tried += ([folder.parent / name] if folder is not None else []) + [models_root() / name]
    if path:
        tried.append(Path(path))
    for cand in tried:
        if (cand / "config.json").is_file():
            return cand
    raise FileNotFoundError(f"the VQ tokenizer {ref} was not found (looked in {', '.join(map(str, tried))}); "
                            "put its folder beside the model or in the zoo")


def load_teacher_parts(name_or_path: str | Path, device: torch.device, guidance: float | None = None,
                       dtype: torch.dtype | None = None) -> tuple[ARImageModel, VQAutoencoder, dict[str, Any]]:
    """``(engine model, VQ, card)`` of an ``image-ar`` model; ``guidance`` None takes the card's default scale."""
    from decoding.api.zoo import resolve

    source = resolve(name_or_path)
    if source.kind != "image-ar":
        raise ValueError(f"{name_or_path} is a {source.kind} model, not an image-ar teacher")
    net, card = load_ar_net(source.path, device)
    if dtype is not None:
        net = net.to(dtype)
    vq = load_vq(tokenizer_folder(card, source.path), device)
    scale = guidance if guidance is not None else cfg_scale(card.get("defaults", {}).get("guidance"), source.name)
    return ARImageModel(net, scale), vq, card


def cfg_scale(spec: Any, name: str) -> float:
    """The scale of one plain CFG entry (or None: 1.0); an OptionError for anything else."""
    if spec is None:
        return 1.0
    specs = list(spec) if isinstance(spec, list | tuple) else [spec]
    parsed = [parse_guidance(s) for s in specs]
    if len(parsed) != 1 or not isinstance(parsed[0], CFG) or parsed[0].rescale or parsed[0].interval is not None:
        raise OptionError(f"{name} is an image AR model: its guidance is one plain CFG scale (e.g. guidance=['cfg:1.5'])")
    return float(parsed[0].scale)


def load_image_ar(source: Source, device: torch.device, dtype: torch.dtype | None) -> ARHandle:
    """The teacher (float32 on the CPU, bfloat16 on CUDA unless ``dtype``) and its tokenizer."""
    dtype = parse_dtype(dtype, device)  # None: bfloat16 on CUDA, float32 elsewhere
    model, vq, card = load_teacher_parts(source.path, device, 1.0, dtype)
    return ARHandle(model, source.name, source.card, device, vq=vq)


def draw_noise(generator: torch.Generator, n: int, num_tokens: int, code_dim: int, device: torch.device) -> Tensor:
    """``(n, L, D)`` standard Gaussian noise: the first draw of ``generator`` (teacher ``flow`` and students alike)."""
    return torch.randn((n, num_tokens, code_dim), generator=generator, device=device)


def images_of(vq: VQAutoencoder, tokens: Tensor) -> Tensor:
    """Tokens ``(B, L)`` -> float32 images ``(B, 1, 28, 28)`` in [-1, 1] on the CPU."""
    return vq.decode(tokens.to(vq.codebook.device)).float().cpu()


def generate_image_ar(
    handle: ARHandle, prompt: Any, run: Run, *, class_label: int | Sequence[int] | Tensor | None = None,
    guidance: Sequence[Any] | None = None, sampling: Sampling | dict | None = None, sampler: str | None = None,
) -> Generation:
    """See :func:`decoding.generate` and the module docstring."""
    if prompt is not None:
        raise OptionError(f"{handle.name} is an image model: it takes class_label=..., not a prompt")
    d = handle.card.get("defaults", {})
    sampler = str(sampler if sampler is not None else d.get("sampler", "ancestral"))
    if sampler not in SAMPLERS:
        raise OptionError(f"unknown sampler {sampler!r} for an image AR model; choose one of {', '.join(SAMPLERS)}")
    scale = cfg_scale(guidance if guidance is not None else d.get("guidance"), handle.name)
    if class_label is None and scale != 1:  # the null class guided towards itself: twice the calls for the same samples
        if guidance is not None:
            raise OptionError("CFG needs class labels: give class_label (unconditional samples have nothing to guide towards)")
        scale = 1.0  # the card's default guidance is for class-conditional samples
    settings_sampling = Sampling.coerce(sampling)
    if sampler != "ancestral" and settings_sampling.given():
        raise OptionError(f"sampling settings apply to sampler='ancestral' only (the {sampler} sampler is fixed by its noise)")
    assert handle.vq is not None
    model = ARImageModel(handle.model.net, scale)
    cfg, dev, n = model.cfg, model.device, run.n
    labels = labels_for(class_label, n, cfg.num_classes)
    generator = new_generator(run.seed, dev)
    noise = draw_noise(generator, n, cfg.num_tokens, handle.vq.cfg.code_dim, dev) if sampler == "flow" else None
    chunks, nfe, seconds = [], [], 0.0
    for lo, b in run.chunks():
        prompt_ids = class_tokens(labels[lo : lo + b].to(dev), cfg)
        if sampler == "ancestral":
            res = decode(model, Autoregressive(), prompt_ids, steps=cfg.num_tokens, processors=settings_sampling.processors(),
                         generator=generator, **run.decode_options())
        elif sampler == "flow":
            assert noise is not None
            res = decode(model, FlowTokens(handle.vq.codes.detach()), {"input_ids": prompt_ids, "noise": noise[lo : lo + b]},
                         steps=cfg.num_tokens, generator=generator, **run.decode_options())
        else:
            res = decode(OnePassModel(model), OnePass(cfg.codebook_size, cfg.num_tokens), prompt_ids, steps=1,
                         generator=generator, **run.decode_options())
        chunks.append(images_of(handle.vq, res.x[:, 1:]))
        nfe += res.nfe.tolist()
        seconds += res.seconds
    settings = {"n": n, "seed": run.seed, "class_label": labels.tolist(), "sampler": sampler, "guidance": [f"cfg:{scale:g}"],
                "sampling": settings_sampling.to_dict(), "batch_size": run.batch_size, "device": str(dev),
                "dtype": str(model.net.head.weight.dtype).removeprefix("torch."), "torch": torch.__version__}
    return Generation(kind=handle.kind, model=handle.name, images=torch.cat(chunks), labels=labels, nfe=nfe,
                      finish_reason=["complete"] * n, seconds=seconds, settings=settings)
