"""Image diffusion checkpoints (``config.json`` + ``model.safetensors``) and their engine wrapper.

A checkpoint folder holds:

- ``config.json``: ``{"format": "decoding-image-unet", "unet": UNetConfig, "prediction": "v" | "eps",
  "schedule": {...}, "classes": [...], ...}``;
- ``model.safetensors``: the (EMA) weights, float32 or bfloat16.

:class:`ImageDiffusionModel` turns a :class:`~decoding.nn.unet.UNet` into an engine model for a
variance-preserving process ``x_t = alpha_t x_0 + sigma_t eps``: ``model(state) ->
Prediction(eps, x0)``. The network sees ``lambda_t = log(alpha_t / sigma_t)`` of the process's
schedule (:mod:`decoding.solvers.schedules`); its output (eps or v, Salimans & Ho,
arXiv:2202.00512) is converted by :func:`decoding.solvers.parameterization.to_prediction`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from decoding.adapters.hf import parse_dtype
from decoding.core.types import Prediction, State
from decoding.io import atomic_path, atomic_write_bytes
from decoding.models.graphs import GraphReplay
from decoding.nn.unet import UNet, UNetConfig
from decoding.processes.continuous import state_times
from decoding.solvers.parameterization import check_schedule, to_prediction
from decoding.solvers.schedules import DiscreteVPSchedule, LinearVPSchedule, VPSchedule

FORMAT = "decoding-image-unet"
PREDICTIONS = ("eps", "v")

#: The two trained sizes (one architecture) and a tiny one for tests. The small one costs about
#: 1/11 of the large one's FLOPs per call (2.33 vs 0.21 GFLOP per 28x28 image).
SIZES: dict[str, UNetConfig] = {
    "large": UNetConfig(channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(1, 2), head_dim=32),
    "small": UNetConfig(channels=24, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), head_dim=24),
    "tiny": UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), head_dim=8, emb_features=16),
}

#: The schedule the Fashion-MNIST models are trained on: diffusers' "squaredcos_cap_v2" (the cosine
#: schedule of Nichol & Dhariwal, arXiv:2102.09672) over 1000 steps, so that diffusers' schedulers
#: with the same settings see the very same noise levels.
TRAIN_SCHEDULE: dict[str, Any] = {"type": "discrete", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}

MAX_FILE_BYTES = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint folder is missing, malformed, or its weights do not match its config."""


def schedule_from_config(d: dict[str, Any]) -> VPSchedule:
    """Build a :class:`VPSchedule` from a checkpoint's ``"schedule"`` entry."""
    kind = d.get("type")
    if kind == "discrete":
        return DiscreteVPSchedule(
            beta_schedule=d.get("beta_schedule", "linear"),
            beta_start=float(d.get("beta_start", 0.0001)),
            beta_end=float(d.get("beta_end", 0.02)),
            num_train_timesteps=int(d.get("num_train_timesteps", 1000)),
        )
    if kind == "linear_vp":
        return LinearVPSchedule(float(d.get("beta_0", 0.1)), float(d.get("beta_1", 20.0)), float(d.get("t_min", 1e-3)))
    raise CheckpointError(f"unknown schedule type {kind!r} in config; expected 'discrete' or 'linear_vp'")


def models_root() -> Path:
    """``$DECODING_MODELS`` or the ``models/`` folder next to the package (the repository's zoo)."""
    env = os.environ.get("DECODING_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """A folder path, or a model name from the zoo (``"fashion-large"`` -> ``models/fashion-large``)."""
    p = Path(path_or_name)
    if p.is_dir():
        return p
    zoo = models_root() / str(path_or_name)
    if zoo.is_dir():
        return zoo
    root = models_root()
    available = sorted(d.name for d in root.glob("*") if (d / "config.json").is_file()) if root.is_dir() else []
    raise CheckpointError(
        f"no model {str(path_or_name)!r}: not a folder and not in {root} "
        f"(available: {', '.join(available) or 'none'}); train one with `decoding train fashion-large --out FOLDER`"
    )


def save_unet(net: UNet, out_dir: str | Path, meta: dict[str, Any], dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (atomically) into ``out_dir``.

    Args:
        net: the network whose weights are saved (pass the EMA copy).
        meta: extra config entries: ``prediction`` (required), ``schedule`` (required), ``classes``...
        dtype: storage dtype; default float32 when the file stays <= 16 MB, else bfloat16.
    """
    if meta.get("prediction") not in PREDICTIONS:
        raise ValueError(f"meta['prediction'] must be one of {PREDICTIONS}, got {meta.get('prediction')!r}")
    schedule_from_config(meta.get("schedule", {}))
    out = Path(out_dir)
    n_params = sum(p.numel() for p in net.state_dict().values())
    if dtype is None:
        dtype = torch.float32 if 4 * n_params <= MAX_FILE_BYTES - 65536 else torch.bfloat16
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    config = {"kind": "image-diffusion", "defaults": {"solver": "dpmpp_2m", "steps": 10},
              "format": FORMAT, "unet": net.cfg.to_dict(), **meta, "weights_dtype": str(dtype).removeprefix("torch.")}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    atomic_write_bytes(out / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return out


def read_card(path: Path, fmt: str, error: type[Exception], what: str) -> dict[str, Any]:
    """The parsed ``config.json`` at ``path`` whose ``format`` must be ``fmt``; else ``error`` (``what``: a hint)."""
    if not path.is_file():
        raise error(f"{path.parent} has no config.json; {what}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON: {e}") from None
    if config.get("format") != fmt:
        raise error(f"{path}: format is {config.get('format')!r}, expected {fmt!r} ({what})")
    return config


def read_config(folder: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, checked for the keys the loader needs."""
    folder = resolve_checkpoint(folder)
    path = folder / "config.json"
    config = read_card(path, FORMAT, CheckpointError, "is it an image model folder?")
    for key in ("unet", "schedule"):
        if key not in config:
            raise CheckpointError(f"{path}: missing the {key!r} entry")
    if config.get("prediction") not in PREDICTIONS:
        raise CheckpointError(f"{path}: 'prediction' must be one of {PREDICTIONS}, got {config.get('prediction')!r}")
    return config


def load_unet(folder: str | Path, device: str | torch.device = "cpu") -> tuple[UNet, dict[str, Any]]:
    """Build the UNet of ``config.json`` and load ``model.safetensors`` into it (as float32).

    Raises:
        CheckpointError: missing files, or weights whose names or shapes differ from what the
            config builds (the message lists the differences).
    """
    folder = resolve_checkpoint(folder)
    config = read_config(folder)
    try:
        cfg = UNetConfig.from_dict(config["unet"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}/config.json: bad 'unet' entry: {e}") from None
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no model.safetensors")
    state = load_file(str(weights))
    net = UNet(cfg)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: config gives {tuple(expected[k].shape)}, weights have {tuple(state[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if expected[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise CheckpointError(
            f"{weights} does not match {folder}/config.json: " + "; ".join(parts)
            + ". The config and the weights come from different models; re-save them together."
        )
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.to(device).eval(), config


class ImageDiffusionModel:
    """A :class:`UNet` as an engine model for a VP process: ``model(state) -> Prediction(eps, x0)``.

    Reads ``state.x`` ``(B, C, H, W)``, ``state.t`` ``(B,)`` (times of ``schedule``) and the class
    labels from ``state.memory["cond"]``: an int, a ``(B,)`` long tensor, or None (unconditional,
    the null class ``num_classes``).

    Args:
        net: the network (its parameters' dtype is the compute dtype).
        schedule: the VP schedule of the process; ``state.t`` is mapped through it to
            ``lambda = log(alpha / sigma)`` (a process with another schedule is refused).
        prediction: what the network outputs, ``"v"`` or ``"eps"``.
        compile: run the network through ``torch.compile``.
        cuda_graphs: replay the network call (input casts included) as a CUDA graph, one per batch
            shape (:class:`~decoding.models.graphs.GraphReplay`; the latents, ``lambda`` and the
            labels are its inputs, so one graph serves every step and grid). Default: on when the
            network is on a CUDA device; ``True`` elsewhere is an error. Calls under perturbed
            attention (PAG) or with gradients on (DPS) run eagerly. The graph holds the network as
            it was at capture: set ``forward`` / the attention backend before the first call.

    One prediction per call; guidance is a wrapper (:class:`decoding.wrappers.guidance.GuidedModel`).
    """

    def __init__(
        self,
        net: UNet,
        schedule: VPSchedule,
        prediction: str = "v",
        compile: bool = False,
        cuda_graphs: bool | None = None,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.net = net
        self.schedule = schedule
        self.prediction = prediction
        self.forward = torch.compile(net) if compile else net
        self._label_cache: tuple[Any, Any, Tensor] | None = None
        self._lambdas: dict[float, float] = {}
        self._param = next(net.parameters())  # .to() converts it in place: its dtype/device stay current
        cuda = self.device.type == "cuda"
        if cuda_graphs and not cuda:
            raise ValueError(f"cuda_graphs=True needs the network on a CUDA device, it is on {self.device}")
        self.graphs = GraphReplay(self._network_eager) if (cuda if cuda_graphs is None else cuda_graphs) else None

    @property
    def num_classes(self) -> int:
        return self.net.cfg.num_classes

    @property
    def null_label(self) -> int:
        """The label of the unconditional branch (classifier-free guidance's null class)."""
        return self.net.cfg.null_class

    @property
    def dtype(self) -> torch.dtype:
        return self._param.dtype

    @property
    def device(self) -> torch.device:
        return self._param.device

    def labels(self, cond: Any, batch: int, device: torch.device) -> Tensor:
        """``(B,)`` long labels from ``cond`` (int, tensor or None = null class), range-checked."""
        null = self.net.cfg.null_class
        if cond is None:
            return torch.full((batch,), null, dtype=torch.long, device=device)
        if isinstance(cond, dict):
            cond = cond.get("class")
        y = torch.as_tensor(cond, device=device)
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"class labels must be integers, got dtype {y.dtype}")
        y = y.long().reshape(-1)
        if y.numel() == 1:
            y = y.expand(batch)
        if y.shape != (batch,):
            raise ValueError(f"need one class label per row ({batch}), got {y.numel()}")
        bad = (y < 0) | (y > null)
        if bool(bad.any()):
            raise ValueError(
                f"class label {int(y[bad][0])} out of range: this model has classes 0..{null - 1} "
                f"(and {null} = unconditional)"
            )
        return y

    def network(self, x: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        """One batched call in the network's dtype (channels_last on CUDA); float32 output ``(B, C, H, W)``.

        Replayed from a CUDA graph when graphs are on (see ``cuda_graphs``) and no gradient is
        needed (DPS differentiates through this call: it runs eagerly).
        """
        if self.graphs is not None and x.device.type == "cuda" and not torch.is_grad_enabled():
            return self.graphs(x, lam.float(), labels)
        return self._network_eager(x, lam, labels)

    def _network_eager(self, x: Tensor, lam: Tensor, labels: Tensor) -> Tensor:
        xin = x.to(self.dtype)
        if xin.device.type == "cuda":
            xin = xin.contiguous(memory_format=torch.channels_last)
        return self.forward(xin, lam.float(), labels).float()

    def _lambda_of(self, t: float) -> float:
        """``lambda(t)`` of the schedule as a float, remembered per time (a grid's times recur every run;
        the schedule's range checks and float64 tensors cost ~0.15 ms of host time per call)."""
        lam = self._lambdas.get(t)
        if lam is None:
            if len(self._lambdas) > 4096:
                self._lambdas.clear()
            lam = self._lambdas[t] = float(self.schedule.lambda_(torch.tensor([t], dtype=torch.float64)))
        return lam

    def _cached_labels(self, cond: Any, b: int, device: torch.device) -> Tensor:
        """:meth:`labels`, validated once per ``cond`` object (the loop passes the same one every step)."""
        key = (id(cond), b, device)
        if self._label_cache is not None and self._label_cache[0] == key and self._label_cache[1] is cond:
            return self._label_cache[2]
        y = self.labels(cond, b, device)
        self._label_cache = (key, cond, y)
        return y

    @torch.inference_mode()
    def __call__(self, state: State) -> Prediction:
        if state.memory.get("schedule") is not self.schedule:
            check_schedule(self.schedule, state)
        x = state.x
        b = x.shape[0]
        t = state_times(state)
        y = self._cached_labels(state.memory.get("cond"), b, x.device)
        if bool((t == t[0]).all()):  # one time for the whole batch: scalars, no per-row tensors
            lam0 = self._lambda_of(float(t[0]))
            lam = torch.full((b,), lam0, device=x.device)
            # alpha^2 = sigmoid(2 lambda), sigma^2 = sigmoid(-2 lambda), as the schedule defines them
            alpha, sigma = math.sqrt(1.0 / (1.0 + math.exp(-2 * lam0))), math.sqrt(1.0 / (1.0 + math.exp(2 * lam0)))
        else:
            lam = self.schedule.lambda_(t).to(x.device, torch.float32)
            alpha = self.schedule.alpha(t).to(x.device, torch.float32)
            sigma = self.schedule.sigma(t).to(x.device, torch.float32)
        perturb = state.memory.get("perturb")  # PAG: (rows (B,) bool, attention layer indices)
        if perturb is None:
            out = self.network(x, lam, y)
        else:
            with self.net.perturbed_attention(rows=perturb[0], layers=perturb[1]):
                out = self._network_eager(x, lam, y)  # the graph holds the unperturbed network
        pred = to_prediction(out, self.prediction, x.float(), alpha, sigma)
        return Prediction(x0=pred.x0.to(x.dtype), eps=pred.eps.to(x.dtype))


def load_image_model(
    path_or_name: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    compile: bool = False,
    cuda_graphs: bool | None = None,
) -> ImageDiffusionModel:
    """Load a checkpoint folder (or zoo name such as ``"fashion-large"``) as an engine model.

    Args:
        dtype: compute dtype of the weights; default bfloat16 on CUDA, float32 elsewhere.
    """
    net, config = load_unet(path_or_name, device)
    dev = torch.device(device)
    dtype = parse_dtype(dtype, dev)  # None: bfloat16 on CUDA, float32 elsewhere
    net = net.to(dtype)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return ImageDiffusionModel(
        net, schedule_from_config(config["schedule"]), prediction=config["prediction"], compile=compile,
        cuda_graphs=cuda_graphs,
    )
