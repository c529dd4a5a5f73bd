"""Adapter guidance distillation (AGD; Jensen & Sadat, arXiv 2503.07274): ``decoding train agd-fashion``.

The base model (``--base``, default fashion-large) stays frozen; only the guidance adapters
(:mod:`decoding.nn.guidance_adapter`, about 2% of its parameters) are trained, so that ONE call of
the adapted network at scale ``s`` predicts the CFG output ``v_u + s (v_c - v_u)``. The examples are
the states of CFG-guided trajectories of the base model (:mod:`decoding.train.agd_data`, made at the
start of every session from the run's seed: no image data); the loss is the v-MSE to the CFG target.
Validation: the same loss on held-out trajectories (another seed); ``adapters_off`` is the distance
of the base model's conditional prediction to the same targets (where training starts).

Resumable and time-budgeted like every ``decoding train`` task; the export is the adapter folder
(:mod:`decoding.models.adapters`: ``adapters.safetensors``, ``config.json``, ``README.md``):

    decoding train agd-fashion --minutes 7 --total-minutes 20 --device cuda \\
        --checkpoint runs/agd/ck --out models/fashion-large-agd
    decoding train agd-fashion --resume --minutes 7 --device cuda --checkpoint runs/agd/ck --out models/fashion-large-agd
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
from decoding.io import atomic_write_bytes
from decoding.models.adapters import base_fingerprint, save_adapters
from decoding.models.image import load_unet, read_config, resolve_checkpoint, schedule_from_config
from decoding.nn.guidance_adapter import AdapterConfig, GuidanceAdapters
from decoding.train.agd_data import Trajectories, sample_trajectories
from decoding.train.task import Task, require_each

_VALID_SEED_OFFSET = 1_000_003


@dataclass
class AGDConfig:
    """Options of an AGD run (CLI flags of ``decoding train agd-fashion``).

    Attributes:
        base: the frozen base model: a folder or a zoo name (a v-prediction image diffusion model).
        scale_min, scale_max: range of the CFG scale ``s`` (``u + s (c - u)``) drawn per trajectory.
        default_scale: the scale of ``agd`` written without one (the card's default).
        trajectories: CFG-guided training trajectories (one example per visited state).
        val_trajectories: held-out trajectories for the validation loss.
        traj_steps: DPM-Solver++(2M) steps of every other batch of trajectories (the others: random in [2, 2 traj_steps]).
        traj_batch: trajectories solved together while making the set.
        traj_seed: seed of the trajectories (validation uses traj_seed + 1000003).
        hidden: width of the adapters' conditioning and hidden layers.
        fourier: random Fourier features of the guidance scale.
        freq_std: standard deviation of the Fourier frequencies.
        val_batch: examples per validation forward.
        channels_last: NHWC activations (faster convolutions on GPUs).
        attention: attention backend of the base model (``sdpa``, ``xformers``, ``naive``; default automatic).
    """

    base: str | None = None
    scale_min: float = 1.0
    scale_max: float = 5.0
    default_scale: float = 2.0
    trajectories: int = 16384
    val_trajectories: int = 256
    traj_steps: int = 20
    traj_batch: int = 1024
    traj_seed: int = 0
    hidden: int = 48
    fourier: int = 64
    freq_std: float = 1.0
    val_batch: int = 1024
    channels_last: bool = True
    attention: str | None = None

    def check(self) -> None:
        if not self.base:
            raise ValueError("--base is required: the frozen model to distil (a folder or a zoo name)")
        require_each(self, ("scale_min",), lambda v: v >= 0, "be >= 0 (1 is the conditional model)")
        if not self.scale_min < self.scale_max:
            raise ValueError(f"--scale-min {self.scale_min} must be below --scale-max {self.scale_max}")
        if not self.scale_min <= self.default_scale <= self.scale_max:
            raise ValueError(f"--default-scale {self.default_scale} must lie in [--scale-min, --scale-max] = "
                             f"[{self.scale_min:g}, {self.scale_max:g}]")
        require_each(self, ("trajectories", "val_trajectories", "traj_steps", "traj_batch", "hidden", "fourier", "val_batch"),
                     lambda v: v >= 1, "be >= 1")
        require_each(self, ("freq_std",), lambda v: v > 0, "be > 0")


class AGDTask(Task):
    """Guidance adapters on a frozen base UNet, trained on its CFG-guided trajectories."""

    kind: ClassVar[str] = "agd"
    SESSION: ClassVar[frozenset[str]] = frozenset({"channels_last", "attention", "val_batch", "traj_batch"})
    loss_name = "distance to the CFG prediction (v-MSE)"

    def __init__(self, config: AGDConfig) -> None:
        config.check()
        self.config = config

    # ---- base model and data -------------------------------------------------------------------

    def _read_base(self) -> None:
        c = self.config
        config = read_config(c.base)
        if config.get("prediction") != "v":
            raise ValueError(f"base {c.base} predicts {config.get('prediction')!r}; AGD here needs a v-prediction model")
        if config.get("unet", {}).get("guidance_embedding"):
            raise ValueError(f"base {c.base} is a guidance-distilled student (it has a guidance embedding); "
                             "AGD adapts a plain CFG model")
        self.base_config = config
        self.schedule = schedule_from_config(config["schedule"])
        self.base_cpu, _ = load_unet(c.base, "cpu")
        self.fingerprint = base_fingerprint(self.base_cpu)

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        self._read_base()
        net = self.base_cpu.to(device).eval().requires_grad_(False)
        if c.channels_last:
            net = net.to(memory_format=torch.channels_last)
        net.set_attention_backend(c.attention)
        self.base, self.device = net, device
        rng = (c.scale_min, c.scale_max)
        self.train_set = sample_trajectories(net, self.schedule, c.trajectories, c.traj_steps, rng, c.traj_seed, c.traj_batch, True)
        self.val_set = sample_trajectories(net, self.schedule, c.val_trajectories, c.traj_steps, rng,
                                           c.traj_seed + _VALID_SEED_OFFSET, c.traj_batch)
        self.adapters_off = self._distance(None, self.val_set)
        return {"data": "CFG-guided trajectories of the base model", "base": str(resolve_checkpoint(c.base)),
                "train_examples": len(self.train_set), "valid_examples": len(self.val_set), "adapters_off": self.adapters_off}

    def bind(self, data_info: dict[str, Any]) -> None:
        self._read_base()
        self.adapters_off = data_info.get("adapters_off")

    @property
    def num_examples(self) -> int:
        return len(self.train_set)

    # ---- network -------------------------------------------------------------------------------

    def build(self) -> nn.Module:
        c = self.config
        cfg = AdapterConfig(self.base_cpu.stage_widths(), 4 * self.base_cpu.cfg.channels, c.hidden, c.fourier, c.freq_std,
                            seed=c.traj_seed)
        return GuidanceAdapters(cfg)

    # ---- loss ----------------------------------------------------------------------------------

    def _predict(self, adapters: Callable[..., Any] | None, data: Trajectories, idx: Tensor | slice) -> Tensor:
        z = data.z[idx]
        if self.config.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        scale = data.scale[idx] if adapters is not None else None
        return self.base(z, data.lam[idx], data.labels[idx], scale, adapters=adapters)

    def loss(self, net: Callable[..., Tensor], indices: Tensor, generator: torch.Generator) -> Tensor:
        target = self.train_set.v[indices]
        return F.mse_loss(self._predict(net, self.train_set, indices).float(), target)

    def _distance(self, adapters: nn.Module | None, data: Trajectories) -> float:
        total, n = 0.0, len(data)
        with torch.no_grad():
            for i in range(0, n, self.config.val_batch):
                sl = slice(i, min(i + self.config.val_batch, n))
                err = (self._predict(adapters, data, sl).float() - data.v[sl]).pow(2).mean(dim=(1, 2, 3))
                total += float(err.sum())
        return total / n

    def validate(self, net: nn.Module) -> dict[str, float]:
        return {"loss": self._distance(net, self.val_set), "adapters_off": float(self.adapters_off)}

    # ---- export --------------------------------------------------------------------------------

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        """The adapter folder: ``adapters.safetensors`` (float32), ``config.json`` and ``README.md``."""
        from decoding.models.adapter_card import render_adapter_card

        assert isinstance(net, GuidanceAdapters)
        c, b = self.config, self.base_config
        n_base = sum(p.numel() for p in self.base_cpu.parameters())
        meta = {
            "defaults": {"guidance": f"agd:{c.default_scale:g}"},
            "method": "adapter guidance distillation (Jensen & Sadat, arXiv 2503.07274), offset adapters after every UNet stage",
            "scale_range": [c.scale_min, c.scale_max], "default_scale": c.default_scale,
            "scale_convention": "the engine's CFG scale s: u + s (c - u); 1 = the conditional model",
            "base": {"name": str(c.base), "unet": self.base_cpu.cfg.to_dict(), "prediction": b["prediction"],
                     "schedule": dict(b["schedule"]), "fingerprint": self.fingerprint, "parameters": n_base},
            "adapter_parameters": net.num_parameters(), "parameter_ratio": round(net.num_parameters() / n_base, 4),
            "trajectories": {"train": c.trajectories, "valid": c.val_trajectories, "steps": c.traj_steps,
                             "train_examples": info["data"].get("train_examples"),
                             "solver": "dpmpp_2m", "spacing": "logsnr", "seed": c.traj_seed},
            "adapters_off_valid_loss": info["data"].get("adapters_off"),
            "training": {**info["options"], **info["summary"], "command": info.get("command", "")},
        }
        save_adapters(net, out, meta, dtype_from_name(info["options"]["save_dtype"]))
        log = {"command": info.get("command", ""), "config": info["options"], **info["summary"]}
        atomic_write_bytes(out / "README.md", render_adapter_card(out, log).encode())
        return [out / "config.json", out / "adapters.safetensors", out / "README.md"]


if __name__ == "__main__":
    raise SystemExit("decoding.train.agd is a training task: run `decoding train agd-fashion --help`")
