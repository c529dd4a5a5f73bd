"""Training task of a Distilled Decoding student (arXiv 2412.17153, sec. 3.3) on the teacher's (noise, tokens) pairs.

The pairs come from ``python -m decoding.dd.pairs`` (no training images are used). The student
starts from the teacher (:meth:`~decoding.dd.student.DDStudentNet.from_teacher`). Each example is
trained from DD's two entry points: with probability ``1 - two_step_share`` from pure noise (all
positions noisy), else from ``reenter`` fixed tokens (their codebook vectors) and the same noise
after them; the loss is the cross-entropy of the teacher's tokens at the positions that were noisy.
The last ``val_pairs`` pairs are held out. Validation: that cross-entropy from noise (the loss) and
from the re-entry point, and the share of tokens the one-step student gets right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decoding.data.weights import dtype_from_name
from decoding.dd.pairs import load_pairs
from decoding.dd.student import DDStudentNet, save_student, student_inputs
from decoding.train.task import Task, require_each


@dataclass
class DDTaskConfig:
    """Options of the DD student task.

    Attributes:
        teacher: the AR teacher's folder or zoo name (kind image-ar).
        pairs: the folder of pair shards (``python -m decoding.dd.pairs``).
        reenter: the token position the second step starts from (default: half the tokens).
        two_step_share: share of examples trained from the re-entry point.
        val_pairs: pairs held out (the last ones) for validation.
    """

    teacher: str | None = None
    pairs: str | None = None
    reenter: int | None = None
    two_step_share: float = 0.5
    val_pairs: int = 2048

    def check(self) -> None:
        if not self.teacher or not self.pairs:
            raise ValueError("--teacher FOLDER and --pairs FOLDER are required (the AR teacher and its pair shards)")
        require_each(self, ("two_step_share",), lambda v: 0.0 <= v <= 1.0, "lie in [0, 1]")
        require_each(self, ("val_pairs", "reenter"), lambda v: v is None or v >= 1, "be >= 1")


class DDStudentTask(Task):
    """The one-/two-step student of an image AR teacher."""

    kind: ClassVar[str] = "image-ar-dd"
    SESSION: ClassVar[frozenset[str]] = frozenset({"pairs", "teacher"})
    loss_name = "cross-entropy (nats / token) from noise"

    def __init__(self, config: DDTaskConfig) -> None:
        config.check()
        self.config = config

    def _teacher(self) -> tuple[Any, Any, dict[str, Any]]:
        from decoding.api.image_ar import load_teacher_parts

        model, vq, card = load_teacher_parts(str(self.config.teacher), torch.device("cpu"), 1.0)
        return model.net, vq, card

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        data, meta = load_pairs(str(c.pairs), device)
        n = data["tokens"].shape[0]
        if n <= c.val_pairs:
            raise ValueError(f"{c.pairs} holds {n} pairs: fewer than --val-pairs {c.val_pairs} + 1; make more pairs or lower it")
        cut = n - c.val_pairs
        self.train = {k: v[:cut] for k, v in data.items()}
        self.valid = {k: v[cut:] for k, v in data.items()}
        self.teacher_net, vq, self.teacher_card = self._teacher()
        self.codes = vq.codes.detach()
        self.codes_dev = self.codes.to(device)
        self.num_tokens = self.teacher_net.cfg.num_tokens
        if meta["num_tokens"] != self.num_tokens or meta["code_dim"] != self.codes.shape[1]:
            raise ValueError(f"{c.pairs} was made for {meta['num_tokens']} tokens of dim {meta['code_dim']}; the teacher has "
                             f"{self.num_tokens} of dim {self.codes.shape[1]}")
        self.meta = meta
        self.k = c.reenter if c.reenter is not None else self.num_tokens // 2
        if not 0 < self.k < self.num_tokens:
            raise ValueError(f"--reenter must lie in (0, {self.num_tokens}), got {self.k}")
        return {"pairs": str(c.pairs), "train_pairs": cut, "valid_pairs": c.val_pairs, "pair_settings": meta}

    def bind(self, data_info: dict[str, Any]) -> None:
        self.teacher_net, vq, self.teacher_card = self._teacher()
        self.codes = vq.codes.detach()
        self.meta = data_info["pair_settings"]
        self.num_tokens = self.teacher_net.cfg.num_tokens
        self.k = self.config.reenter if self.config.reenter is not None else self.num_tokens // 2

    @property
    def num_examples(self) -> int:
        return int(self.train["tokens"].shape[0])

    def build(self) -> nn.Module:
        return DDStudentNet.from_teacher(self.teacher_net, self.codes)

    def _ce(self, net: Callable[..., Tensor], batch: dict[str, Tensor], fixed: Tensor, reduction: str = "mean") -> Tensor:
        values, noisy = student_inputs(self.codes_dev, batch["tokens"], batch["noise"], fixed)
        logits = net(batch["labels"], values, noisy).float()
        ce = F.cross_entropy(logits.transpose(1, 2), batch["tokens"], reduction="none")  # (B, n)
        ce = ce * noisy
        return ce.sum() / noisy.sum() if reduction == "mean" else ce.sum()

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        batch = {k: v[indices] for k, v in self.train.items()}
        two = torch.rand(indices.shape, generator=generator, device=indices.device) < self.config.two_step_share
        return self._ce(net, batch, two.long() * self.k)

    def validate(self, net: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        v = self.valid
        n = v["tokens"].shape[0]
        for name, k in (("loss", 0), ("loss_reenter", self.k)):
            total = torch.zeros((), device=v["tokens"].device)
            for lo in range(0, n, 1024):
                batch = {key: t[lo : lo + 1024] for key, t in v.items()}
                total += self._ce(net, batch, torch.full((batch["tokens"].shape[0],), k, device=total.device), "sum")
            out[name] = float(total) / (n * (self.num_tokens - k))
        right = torch.zeros((), device=v["tokens"].device)
        for lo in range(0, n, 1024):
            batch = {key: t[lo : lo + 1024] for key, t in v.items()}
            zero = torch.zeros(batch["tokens"].shape[0], dtype=torch.long, device=right.device)
            values, noisy = student_inputs(self.codes_dev, batch["tokens"], batch["noise"], zero)
            right += (net(batch["labels"], values, noisy).argmax(-1) == batch["tokens"]).sum()
        out["token_accuracy"] = float(right) / v["tokens"].numel()
        return out

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        assert isinstance(net, DDStudentNet)
        tc = self.teacher_card
        card = {"tokenizer": tc["tokenizer"], "classes": tc.get("classes", []),
                "dd": {"teacher": str(self.config.teacher), "reenter": self.k, "guidance": self.meta["guidance"],
                       "flow_steps": self.meta["flow_steps"],
                       "uncond_share": self.meta.get("uncond_share", 0.0), "pairs": info["data"]["train_pairs"], "arxiv": "2412.17153"},
                "defaults": {"steps": 1}, "valid": info["summary"].get("shipped_valid") or {}}
        save_student(net, out, card, dtype=dtype_from_name(info["options"]["save_dtype"]))
        return [out / "config.json", out / "model.safetensors"]
