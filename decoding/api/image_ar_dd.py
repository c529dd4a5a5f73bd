"""``load`` / ``generate`` for Distilled Decoding students (kind ``image-ar-dd``; Liu et al., arXiv 2412.17153).

The card holds ``"ar"`` (the sizes of the teacher's transformer the student copies), ``"code_dim"``,
``"tokenizer"`` (as an ``image-ar`` card), ``"dd": {"teacher", "reenter", "guidance", "pairs", ...}``
and ``"defaults": {"steps": 1}``. A call runs :class:`~decoding.dd.steps.DDProcess` in the decode
loop with ``steps`` 1 (one network call) or 2 (re-entering at token ``reenter``). The noise is the
first draw of the generator seeded with ``seed``, as the teacher's ``sampler="flow"`` draws it: with
the same seed a student approximates the image its teacher maps that noise to. The CFG scale is the
one the pairs were made with (``dd.guidance``), so ``guidance`` is not an option. Without
``class_label`` the samples are unconditional (the null class), which needs a student whose pairs
held unconditional ones (``dd.uncond_share > 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from decoding.adapters.hf import parse_dtype
from decoding.api.generation import Generation
from decoding.api.image import labels_for
from decoding.api.image_ar import draw_noise, images_of, tokenizer_folder
from decoding.api.options import OptionError
from decoding.api.run import Run
from decoding.api.zoo import Handle, Source
from decoding.core.loop import decode
from decoding.core.types import new_generator
from decoding.dd.steps import DDProcess
from decoding.dd.student import StudentModel, load_student
from decoding.models.vq import VQAutoencoder, load_vq


@dataclass
class DDHandle(Handle):
    """A loaded student: the engine model (:class:`~decoding.dd.student.StudentModel`), its VQ tokenizer, its card."""

    vq: VQAutoencoder | None = None
    kind: str = field(default="image-ar-dd", init=False)

    @property
    def reenter(self) -> int:
        return int(self.card["dd"]["reenter"])


def load_image_ar_dd(source: Source, device: torch.device, dtype: torch.dtype | None) -> DDHandle:
    """The student (float32 on the CPU, bfloat16 on CUDA unless ``dtype``) and its tokenizer."""
    if "dd" not in source.card or "reenter" not in source.card["dd"]:
        raise ValueError(f"{source.path}/config.json declares kind image-ar-dd but has no 'dd' entry with 'reenter'")
    net, card = load_student(source.path, device)
    dtype = parse_dtype(dtype, device)  # None: bfloat16 on CUDA, float32 elsewhere
    net = net.to(dtype)
    net.codes = net.codes.float()
    vq = load_vq(tokenizer_folder(card, source.path), device)
    return DDHandle(StudentModel(net), source.name, source.card, device, vq=vq)


def generate_image_ar_dd(handle: DDHandle, prompt: Any, run: Run, *, class_label: int | Sequence[int] | Tensor | None = None,
                         steps: int | None = None) -> Generation:
    """See :func:`decoding.generate` and the module docstring."""
    if prompt is not None:
        raise OptionError(f"{handle.name} is an image model: it takes class_label=..., not a prompt")
    if class_label is None and not handle.card["dd"].get("uncond_share"):
        raise OptionError(f"{handle.name} was trained on class-conditional pairs only: give class_label")
    steps = int(steps if steps is not None else handle.card.get("defaults", {}).get("steps", 1))
    if steps not in (1, 2):
        raise OptionError(f"{handle.name} is a Distilled Decoding student: steps must be 1 or 2, got {steps}")
    assert handle.vq is not None
    model: StudentModel = handle.model
    cfg, dev, n = model.cfg, model.device, run.n
    labels = labels_for(class_label, n, cfg.num_classes)
    generator = new_generator(run.seed, dev)
    noise = draw_noise(generator, n, cfg.num_tokens, model.net.code_dim, dev)
    process = DDProcess(cfg.num_tokens, handle.reenter)
    chunks, nfe, seconds = [], [], 0.0
    for lo, b in run.chunks():
        res = decode(model, process, {"noise": noise[lo : lo + b], "labels": labels[lo : lo + b].to(dev)}, steps=steps,
                     generator=generator, **run.decode_options())
        chunks.append(images_of(handle.vq, res.x))
        nfe += res.nfe.tolist()
        seconds += res.seconds
    settings = {"n": n, "seed": run.seed, "class_label": labels.tolist(), "steps": steps, "reenter": handle.reenter,
                "teacher_guidance": handle.card["dd"].get("guidance"), "batch_size": run.batch_size, "device": str(dev),
                "dtype": str(model.net.inp.weight.dtype).removeprefix("torch."), "torch": torch.__version__}
    return Generation(kind=handle.kind, model=handle.name, images=torch.cat(chunks), labels=labels, nfe=nfe,
                      finish_reason=["complete"] * n, seconds=seconds, settings=settings)
