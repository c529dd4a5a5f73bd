"""The Distilled Decoding student (arXiv 2412.17153, sec. 3.3): the teacher's transformer with continuous inputs.

Sequence ``[class, v_1, ..., v_n]`` ``(B, n + 1)``: ``v_i`` is the codebook vector of token ``i`` where
that token is already fixed, else its noise vector ``eps_i`` (both ``D``-dim), embedded as
``W v_i + marker[noisy_i]``; the output at position ``i`` gives the logits of token ``i``
``(B, n, K)``. Attention stays causal: under the exact map token ``i`` depends on ``eps_<=i`` only.

The student starts as a copy of the teacher (blocks, norm, head and the class embedding); ``W`` is
the least-squares fit of the teacher's code embeddings from the codebook vectors (so fixed tokens
enter roughly as the teacher saw them), and both markers start at zero.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from decoding.core.types import Prediction, State
from decoding.data.weights import load_tensors
from decoding.models.ar_image import ARConfig, ARImageNet

KIND = "image-ar-dd"


class DDStudentNet(nn.Module):
    """``(labels (B,), values (B, n, D), noisy (B, n) bool) -> logits (B, n, K)``."""

    def __init__(self, cfg: ARConfig, codes: Tensor) -> None:
        super().__init__()
        if codes.dim() != 2 or codes.shape[0] != cfg.codebook_size:
            raise ValueError(f"codes must be ({cfg.codebook_size}, D), got {tuple(codes.shape)}")
        self.cfg = cfg
        self.net = ARImageNet(cfg)
        self.inp = nn.Linear(codes.shape[1], cfg.dim, bias=False)
        self.marker = nn.Embedding(2, cfg.dim)
        nn.init.zeros_(self.marker.weight)
        self.register_buffer("codes", codes.detach().float().clone())

    @property
    def code_dim(self) -> int:
        return int(self.codes.shape[1])

    @classmethod
    def from_teacher(cls, teacher: ARImageNet, codes: Tensor) -> DDStudentNet:
        """A student whose weights start as the teacher's (see the module docstring)."""
        student = cls(teacher.cfg, codes.to(teacher.head.weight.device))
        student.net.load_state_dict(copy.deepcopy(teacher.state_dict()))
        with torch.no_grad():
            target = teacher.embed.weight[: teacher.cfg.codebook_size].float()  # (K, dim)
            w = torch.linalg.lstsq(student.codes.cpu(), target.cpu()).solution  # (D, dim)
            student.inp.weight.copy_(w.t().to(student.inp.weight))
        return student

    def forward(self, labels: Tensor, values: Tensor, noisy: Tensor) -> Tensor:
        b, n, d = values.shape
        if n != self.cfg.num_tokens or d != self.code_dim or noisy.shape != (b, n) or labels.shape != (b,):
            raise ValueError(f"student inputs: labels (B,), values (B, {self.cfg.num_tokens}, {self.code_dim}), noisy (B, n); "
                             f"got {tuple(labels.shape)}, {tuple(values.shape)}, {tuple(noisy.shape)}")
        head = self.net.embed(labels + self.cfg.codebook_size)[:, None]
        body = self.inp(values.to(self.inp.weight.dtype)) + self.marker(noisy.long())
        logits, _ = self.net.run(torch.cat([head, body], dim=1))
        return logits[:, 1:]


def student_inputs(codes: Tensor, tokens: Tensor, noise: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor]:
    """``(values (B, n, D), noisy (B, n))``: codebook vectors of ``tokens`` at positions ``< fixed`` ``(B,)``, noise elsewhere."""
    pos = torch.arange(tokens.shape[1], device=tokens.device)[None]
    noisy = pos >= fixed[:, None]
    values = torch.where(noisy[..., None], noise.to(codes.dtype), codes[tokens])
    return values, noisy


class StudentModel:
    """Engine model of :class:`~decoding.dd.steps.DDProcess`: ``state -> Prediction(logits (B, n, K))``."""

    def __init__(self, net: DDStudentNet) -> None:
        self.net = net
        self.cfg = net.cfg

    @property
    def device(self) -> torch.device:
        return self.net.codes.device

    @torch.no_grad()
    def __call__(self, state: State) -> Prediction:
        values, noisy = student_inputs(self.net.codes, state.x, state.memory["noise"], state.t)
        return Prediction(logits=self.net(state.memory["labels"], values, noisy).float())


def save_student(net: DDStudentNet, folder: str | Path, card: dict[str, Any], dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``kind`` image-ar-dd, ``ar`` sizes, ``code_dim``, plus ``card``)."""
    from decoding.data.weights import save_model_folder

    config = {"kind": KIND, "ar": net.cfg.to_dict(), "code_dim": net.code_dim, **card}
    return save_model_folder(folder, net.state_dict(), config, dtype=dtype, metadata={"format": "decoding-dd-student"})


def load_student(folder: str | Path, device: torch.device | str = "cpu") -> tuple[DDStudentNet, dict[str, Any]]:
    """The student of a folder written by :func:`save_student` (float32, eval) and its card."""
    folder = Path(folder)
    card = json.loads((folder / "config.json").read_text())
    for key in ("ar", "code_dim"):
        if key not in card:
            raise ValueError(f"{folder}/config.json has no {key!r} entry: not a DD student card")
    cfg = ARConfig(**card["ar"])
    net = DDStudentNet(cfg, torch.zeros(cfg.codebook_size, int(card["code_dim"])))
    state, _ = load_tensors(folder / "model.safetensors")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.to(device).eval(), card
