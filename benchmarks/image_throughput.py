"""Images per second of the engine against diffusers on the same network weights.

    python benchmarks/image_throughput.py --device cuda --model fashion-large --batch 256 --nfe 10 50 \
        [--compile] [--peer diffusers|plain] [--out benchmarks/results/image_throughput.json]
    # small batches, where launches dominate (issue 23): the engine with and without CUDA graphs
    python benchmarks/image_throughput.py --device cuda --model fashion-large --batch 1 16 --nfe 10 --peer diffusers

Both sides run the same UNet weights in bfloat16 (channels_last on CUDA), the same solver
(DPM-Solver++ 2M, arXiv 2211.01095) on the same time grid, from the same starting noise:

- engine: :func:`decoding.decode` with :class:`~decoding.processes.continuous.ContinuousProcess`,
  :class:`~decoding.solvers.dpm_solver_pp.DPMSolverPP` and :class:`~decoding.models.image.ImageDiffusionModel`
  (on CUDA its network call replays a CUDA graph, the default; ``engine-eager``, run in the same
  process on CUDA, is the same engine with ``cuda_graphs=False``; optionally ``--compile``: the
  network through ``torch.compile(mode="max-autotune-no-cudagraphs")``);
- peer ``diffusers``: the network wrapped as a diffusers ``ModelMixin`` (``forward(sample, timestep,
  class_labels) -> UNet2DOutput``) driven by ``DPMSolverMultistepScheduler`` (``squaredcos_cap_v2``,
  ``v_prediction``, ``dpmsolver++``, order 2, ``final_sigmas_type="zero"``), the loop every
  diffusers pipeline runs; ``--peer-compile`` compiles the peer's network the same way;
- peer ``plain``: the same network and DPM-Solver++ 2M written as a plain PyTorch loop (used when
  diffusers is not installed).

The engine runs on diffusers' integer timesteps (plus the final step to data) so the outputs can be
compared: the script prints the largest difference between the two sides' images. Prints a table
of images/s and the ratio engine/peer per NFE, and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from decoding.core.loop import decode
from decoding.models.image import SIZES, TRAIN_SCHEDULE, ImageDiffusionModel, load_unet, schedule_from_config
from decoding.nn.unet import UNet
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.dpm_solver_pp import DPMSolverPP


def build_net(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[UNet, str]:
    if args.model.startswith("random:"):  # untrained weights of a named size (CPU smoke tests)
        torch.manual_seed(0)
        net, prediction = UNet(copy.deepcopy(SIZES[args.model.split(":", 1)[1]])), "v"
    else:
        net, config = load_unet(args.model)
        prediction = config["prediction"]
    net = net.to(device, dtype).eval()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net, prediction


def maybe_compile(net: torch.nn.Module, enabled: bool, mode: str) -> torch.nn.Module:
    return torch.compile(net, mode=mode, dynamic=False) if enabled else net


# ---- the peer: diffusers ------------------------------------------------------------------


def diffusers_peer(net: UNet, prediction: str, device: torch.device, compile_net: bool, mode: str):
    """(scheduler, wrapped model) for the diffusers loop."""
    from diffusers import ConfigMixin, DPMSolverMultistepScheduler, ModelMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.models.unets.unet_2d import UNet2DOutput
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=TRAIN_SCHEDULE["num_train_timesteps"], beta_schedule=TRAIN_SCHEDULE["beta_schedule"],
        prediction_type="v_prediction" if prediction == "v" else "epsilon", algorithm_type="dpmsolver++",
        solver_order=2, final_sigmas_type="zero", lower_order_final=True,
    )

    class DiffusersUNet(ModelMixin, ConfigMixin):
        """Our UNet behind diffusers' model interface: integer timesteps -> lambda of the scheduler."""

        @register_to_config
        def __init__(self, unet_config: dict, num_train_timesteps: int = 1000) -> None:
            super().__init__()
            self.unet = UNet(type(net.cfg).from_dict(unet_config))
            ac = scheduler.alphas_cumprod.double()
            # a plain attribute, not a buffer: .to(bfloat16) must not round the noise levels
            self.lambda_table = {torch.device("cpu"): (0.5 * (ac.log() - (1 - ac).log())).float()}

        def forward(self, sample: Tensor, timestep: Tensor | int, class_labels: Tensor, return_dict: bool = True):
            table = self.lambda_table.get(sample.device)
            if table is None:
                table = self.lambda_table[sample.device] = self.lambda_table[torch.device("cpu")].to(sample.device)
            t = torch.as_tensor(timestep, device=sample.device).long().expand(sample.shape[0])
            out = self.runner(sample, table[t], class_labels)
            return UNet2DOutput(sample=out) if return_dict else (out,)

    wrapped = DiffusersUNet(unet_config=net.cfg.to_dict())
    wrapped.unet.load_state_dict(net.state_dict())
    for ours, theirs in zip(net.attention_layers(), wrapped.unet.attention_layers(), strict=True):
        theirs.backend = ours.backend
    wrapped = wrapped.to(device, next(net.parameters()).dtype).eval()
    if device.type == "cuda":
        wrapped = wrapped.to(memory_format=torch.channels_last)
    wrapped.runner = maybe_compile(wrapped.unet, compile_net, mode)
    return scheduler, wrapped


@torch.inference_mode()
def run_diffusers(scheduler, wrapped, noise: Tensor, labels: Tensor, nfe: int) -> Tensor:
    scheduler.set_timesteps(nfe, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(x, t).to(wrapped.dtype)
        out = wrapped(inp, t, labels).sample.float()
        x = scheduler.step(out, t, x).prev_sample
    return x


# ---- the peer: a plain PyTorch loop ----------------------------------------------------------


@torch.inference_mode()
def run_plain(runner, net_dtype: torch.dtype, prediction: str, ts: Tensor, noise: Tensor, labels: Tensor) -> Tensor:
    """DPM-Solver++ 2M (midpoint, first-order final step to data) in a few lines of PyTorch."""
    sched = schedule_from_config(TRAIN_SCHEDULE)
    lam = sched.lambda_(ts[:-1]).tolist() + [math.inf]
    alpha, sigma = sched.alpha(ts).tolist(), sched.sigma(ts).tolist()
    x, prev = noise, None
    n = len(ts) - 1
    for i in range(n):
        lam_in = torch.full((x.shape[0],), lam[i], device=x.device)
        out = runner(x.to(net_dtype), lam_in, labels).float()
        x0 = alpha[i] * x - sigma[i] * out if prediction == "v" else (x - sigma[i] * out) / alpha[i]
        if i == n - 1:
            x = x0
            break
        h = lam[i + 1] - lam[i]
        e = math.expm1(-h)
        d = x0 if prev is None else x0 + (x0 - prev[0]) * (0.5 * h / (lam[i] - prev[1]))  # 2M midpoint
        x = (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * e * d
        prev = (x0, lam[i])
    return x


def measure(args, device, dtype, prediction, schedule, engine_model, eager_model, peer, scheduler, wrapped,
            peer_runner, batch: int, nfe: int) -> dict:
    """One row: images/s of the engine, of the engine without CUDA graphs (CUDA only) and of the peer."""
    g = torch.Generator(device=device).manual_seed(0)
    noise = torch.randn(batch, 1, 28, 28, generator=g, device=device)
    labels = torch.arange(batch, device=device) % engine_model.num_classes
    if peer == "diffusers":
        scheduler.set_timesteps(nfe)
        ts = torch.cat([scheduler.timesteps.double(), torch.tensor([-1.0], dtype=torch.float64)])
    else:
        from decoding.solvers.timesteps import make_timesteps

        ts = make_timesteps(schedule, nfe, "logsnr")
    process = ContinuousProcess(schedule, DPMSolverPP(order=2), timesteps=ts)

    def engine(model=engine_model) -> Tensor:
        return decode(model, process, noise, steps=nfe, generator=g, cond=labels).x

    if peer == "diffusers":
        def peer_fn() -> Tensor:
            return run_diffusers(scheduler, wrapped, noise, labels, nfe)
    else:
        def peer_fn() -> Tensor:
            return run_plain(peer_runner, dtype, prediction, ts, noise, labels)

    t_engine, x_engine = timed(engine, device, args.repeats, args.warmup)
    t_peer, x_peer = timed(peer_fn, device, args.repeats, args.warmup)
    diff = float((x_engine.float().clamp(-1, 1) - x_peer.float().clamp(-1, 1)).abs().max())
    row = {
        "nfe": nfe, "batch": batch, "engine_images_per_s": batch / t_engine,
        "peer_images_per_s": batch / t_peer, "ratio": t_peer / t_engine,
        "engine_s": t_engine, "peer_s": t_peer, "max_abs_image_diff": diff,
    }
    eager = ""
    if eager_model is not None:
        t_eager, x_eager = timed(lambda: engine(eager_model), device, args.repeats, args.warmup)
        row.update(engine_eager_images_per_s=batch / t_eager, eager_ratio=t_peer / t_eager,
                   graph_vs_eager_max_abs_diff=float((x_engine.float() - x_eager.float()).abs().max()))
        eager = (f"  engine-eager {row['engine_eager_images_per_s']:9.1f} img/s ({row['eager_ratio']:.2f}x)"
                 f"  graph-eager max|diff| {row['graph_vs_eager_max_abs_diff']:.3g}")
    print(
        f"NFE {nfe:3d}  batch {batch:4d}  engine {row['engine_images_per_s']:9.1f} img/s  "
        f"{peer} {row['peer_images_per_s']:9.1f} img/s  ratio {row['ratio']:.2f}x  max|diff| {diff:.3g}{eager}",
        flush=True,
    )
    return row


# ---- timing -------------------------------------------------------------------------------


def timed(fn, device: torch.device, repeats: int, warmup: int) -> tuple[float, Tensor]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fashion-large", help="checkpoint folder / zoo name, or random:<size>")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--batch", type=int, nargs="+", default=[256])
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 50])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile the engine's network")
    p.add_argument("--peer-compile", action="store_true", help="torch.compile the peer's network too")
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    p.add_argument("--peer", default="auto", choices=["auto", "diffusers", "plain"])
    p.add_argument("--attention", default=None, choices=["xformers", "sdpa", "naive"],
                   help="attention backend of both sides (default: automatic)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    peer = args.peer
    if peer == "auto":
        try:
            import diffusers  # noqa: F401

            peer = "diffusers"
        except ImportError:
            peer = "plain"
    net, prediction = build_net(args, device, dtype)
    net.set_attention_backend(args.attention)
    schedule = schedule_from_config(TRAIN_SCHEDULE)
    engine_model = ImageDiffusionModel(net, schedule, prediction)
    engine_model.forward = maybe_compile(net, args.compile, args.compile_mode)
    eager_model = None
    if device.type == "cuda":  # the same engine without CUDA graphs, to show what they bring
        eager_model = ImageDiffusionModel(net, schedule, prediction, cuda_graphs=False)
        eager_model.forward = engine_model.forward
    if peer == "diffusers":
        scheduler, wrapped = diffusers_peer(net, prediction, device, args.peer_compile, args.compile_mode)
    else:
        peer_runner = maybe_compile(copy.deepcopy(net), args.peer_compile, args.compile_mode)  # same backend (deepcopy)
    rows = []
    for batch, nfe in [(b, n) for b in args.batch for n in args.nfe]:
        rows.append(measure(args, device, dtype, prediction, schedule, engine_model, eager_model, peer,
                            scheduler if peer == "diffusers" else None, wrapped if peer == "diffusers" else None,
                            None if peer == "diffusers" else peer_runner, batch, nfe))
    result = {
        "benchmark": "image_throughput", "model": args.model, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": args.dtype, "peer": peer, "attention": args.attention or "auto", "engine_compile": args.compile, "peer_compile": args.peer_compile,
        "compile_mode": args.compile_mode if (args.compile or args.peer_compile) else None,
        "torch": torch.__version__, "command": "python benchmarks/image_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
    }
    if peer == "diffusers":
        import diffusers

        result["diffusers"] = diffusers.__version__
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
