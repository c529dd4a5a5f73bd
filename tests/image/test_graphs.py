"""The image network call replayed as a CUDA graph inside ``decode()`` (issue 23), and its CPU fallback."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch

from decoding.core.loop import decode
from decoding.models.graphs import GraphReplay
from decoding.models.image import SIZES, TRAIN_SCHEDULE, ImageDiffusionModel, schedule_from_config
from decoding.nn.unet import UNet
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.dpm_solver_pp import DPMSolverPP
from tests.examples.runner import load_script

SCHEDULE = schedule_from_config(TRAIN_SCHEDULE)


def tiny_model(device: str = "cpu", **kw) -> ImageDiffusionModel:
    torch.manual_seed(0)
    net = UNet(copy.deepcopy(SIZES["tiny"])).to(device).eval()
    return ImageDiffusionModel(net, SCHEDULE, "v", **kw)


def sample(model: ImageDiffusionModel, batch: int, steps: int = 10, device: str = "cpu") -> torch.Tensor:
    noise = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch)).to(device)
    labels = torch.arange(batch, device=device) % 10
    process = ContinuousProcess(SCHEDULE, DPMSolverPP(order=2))
    return decode(model, process, noise, steps=steps, cond=labels, seed=0).x


def test_cpu_falls_back_to_the_eager_network() -> None:
    model = tiny_model()
    assert model.graphs is None  # default: graphs only on CUDA
    assert torch.equal(sample(model, 3), sample(tiny_model(cuda_graphs=False), 3))


def test_graphs_on_cpu_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs the network on a CUDA device"):
        tiny_model(cuda_graphs=True)
    with pytest.raises(ValueError, match="CUDA tensors"):
        GraphReplay(torch.sin)(torch.zeros(3))


def test_image_benchmark_measures_several_batches(tmp_path) -> None:
    bench = load_script("benchmarks/image_throughput.py", "image_throughput_bench")
    out = tmp_path / "r.json"
    bench.main(["--device", "cpu", "--model", "random:tiny", "--dtype", "float32", "--batch", "1", "2", "--nfe", "2",
                "--repeats", "1", "--warmup", "0", "--peer", "diffusers", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["nfe"]) for r in rows] == [(1, 2), (2, 2)]
    assert all(r["max_abs_image_diff"] < 1e-4 and r["ratio"] > 0 for r in rows)  # same solver, same weights (float32)


@pytest.mark.gpu
def test_graph_replay_equals_the_eager_call_and_returns_fresh_tensors() -> None:
    dev = torch.device("cuda")
    w = torch.randn(64, 64, device=dev)
    replay = GraphReplay(lambda x, s: torch.tanh(x @ w) * s)
    xs = [torch.randn(4, 64, device=dev) for _ in range(3)]
    outs = [replay(x, torch.full((4, 1), float(i), device=dev)) for i, x in enumerate(xs)]
    assert len(replay) == 1 and not replay.failed
    for i, (x, out) in enumerate(zip(xs, outs, strict=True)):
        assert torch.equal(out, torch.tanh(x @ w) * i)  # earlier results are not overwritten


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 16])
def test_graphed_images_equal_the_eager_engine(batch: int) -> None:
    """fashion-large in bf16 when it is installed (else a random large UNet): images within bf16 noise."""
    from decoding.models.image import load_image_model

    try:
        graphed = load_image_model("fashion-large", "cuda")
        eager = load_image_model("fashion-large", "cuda", cuda_graphs=False)
    except Exception:
        torch.manual_seed(0)
        net = UNet(copy.deepcopy(SIZES["large"])).to("cuda", torch.bfloat16).eval()
        graphed, eager = (ImageDiffusionModel(net, SCHEDULE, "v", cuda_graphs=g) for g in (True, False))
    assert graphed.graphs is not None and eager.graphs is None
    a, b = sample(graphed, batch, device="cuda"), sample(eager, batch, device="cuda")
    assert len(graphed.graphs) == 1 and not graphed.graphs.failed  # one graph for all ten steps
    assert float((a.clamp(-1, 1) - b.clamp(-1, 1)).abs().max()) <= 2e-2


@pytest.mark.gpu
def test_dps_still_differentiates_through_a_graphed_model() -> None:
    from decoding.control.dps import differentiable_call

    model = tiny_model("cuda")
    process = ContinuousProcess(SCHEDULE, DPMSolverPP(order=2))
    state = process.init(torch.randn(2, 1, 28, 28, device="cuda"), None).remember(grid=process.schedule(4))
    with torch.enable_grad():
        x = state.x.clone().requires_grad_(True)
        pred = differentiable_call(model, replace(state, x=x))
        assert pred.x0.requires_grad


def test_the_grid_values_are_reused_across_steps_and_equal_a_fresh_computation() -> None:
    """ContinuousProcess computes the schedule on its grid once per run, not per step (host time at small batch)."""
    from decoding.solvers.base import StepInfo

    seen = []

    class Spy(DPMSolverPP):
        def step(self, x, pred, info, history, noise=None):
            seen.append(info)
            return super().step(x, pred, info, history, noise)

    noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = decode(tiny_model(), ContinuousProcess(SCHEDULE, Spy(order=2)), noise, steps=6, cond=3, seed=0).x
    ref = decode(tiny_model(), ContinuousProcess(SCHEDULE, DPMSolverPP(order=2)), noise, steps=6, cond=3, seed=0).x
    assert torch.equal(out, ref)
    assert [info.i for info in seen] == list(range(6))
    assert all(info.lambdas is seen[0].lambdas for info in seen)  # computed once
    for info in seen:
        fresh = StepInfo.make(SCHEDULE, info.source, info.i)
        assert all(torch.equal(getattr(info, f), getattr(fresh, f)) for f in ("ts", "lambdas", "alphas", "sigmas"))


def test_remembered_lambdas_equal_the_schedule_and_dtype_follows_to() -> None:
    model = tiny_model()
    for t in (999.0, 500.0, 0.0, 999.0):
        assert model._lambda_of(t) == float(SCHEDULE.lambda_(torch.tensor([t], dtype=torch.float64)))
    assert len(model._lambdas) == 3
    model.net.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_host_overhead_script_runs() -> None:
    bench = load_script("benchmarks/image_host_overhead.py", "image_host_overhead")
    out = bench.main(["--runs", "1"])
    assert 0 < out["min_us"] <= out["median_us"]
