"""Resumable training: K steps + resume K steps == 2K uninterrupted steps, bit for bit (CPU, same seed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decoding.cli.train import train_main
from decoding.data.weights import load_tensors
from decoding.train.checkpoint import read_checkpoint, read_state
from tests.train.helpers import fashion_folder, token_file


def _args(model: str, data: Path) -> list[str]:
    common = ["--device", "cpu", "--no-progress", "--seed", "3", "--data", str(data)]
    if model.startswith("fashion"):
        # dropout: the global CPU generator must be restored too; 64 images / batch 8: epochs turn over
        extra = ["--dropout", "0.1"] if model == "fashion-tiny" else ["--limit-data", "64"]
        return [*common, "--batch-size", "8", "--val-limit", "16", "--val-every", "4", "--log-every", "3", *extra]
    return [*common, "--batch-size", "8", "--seq-len", "16", "--dim", "16", "--layers", "1", "--heads", "2",
            "--eval-windows", "8", "--val-every", "4", "--log-every", "3"]


def _run(model: str, data: Path, folder: Path, steps: int, stops: list[int], extra: tuple[str, ...] = ()) -> None:
    """One run of ``steps`` steps, stopped (and resumed) at each step of ``stops``."""
    where = ["--checkpoint", str(folder / "ck"), "--out", str(folder / "out")]
    first = [*_args(model, data), "--steps", str(steps), *where, *extra]
    assert train_main(model, first + (["--stop-at", str(stops[0])] if stops else [])) == 0
    for stop in stops[1:]:
        assert train_main(model, ["--resume", *where, "--stop-at", str(stop)]) == 0
    if stops:
        assert train_main(model, ["--resume", *where]) == 0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"image": fashion_folder(root / "fashion"), "text": token_file(root / "tokens.safetensors")}


@pytest.mark.parametrize("model", ["fashion-tiny", "radd-brown", "as-arm-brown", "fashion-classifier"])
def test_resumed_run_is_bit_identical(model: str, data: dict[str, Path], tmp_path: Path) -> None:
    src = data["image"] if model.startswith("fashion") else data["text"]
    _run(model, src, tmp_path / "straight", 10, [])
    _run(model, src, tmp_path / "split", 10, [5])  # stopped mid-epoch, between two loss logs
    a, sa = read_checkpoint(tmp_path / "straight" / "ck")
    b, sb = read_checkpoint(tmp_path / "split" / "ck")
    assert set(a) == set(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
    assert sa["step"] == sb["step"] == 10 and sa["history"] == sb["history"] and sa["sampler"] == sb["sampler"]
    assert len(sb["sessions"]) == 2 and len(sa["sessions"]) == 1
    shipped, _ = load_tensors(tmp_path / "straight" / "out" / "model.safetensors")
    again, _ = load_tensors(tmp_path / "split" / "out" / "model.safetensors")
    assert shipped.keys() == again.keys() and all(torch.equal(shipped[k], again[k]) for k in shipped)


def test_compact_checkpoint_is_half_the_size_and_close(data: dict[str, Path], tmp_path: Path) -> None:
    """bfloat16 weights and moments: about half the bytes; the resumed run is no longer bit-identical."""
    _run("fashion-tiny", data["image"], tmp_path / "exact", 10, [5])
    compact = ("--checkpoint-weights", "bfloat16", "--checkpoint-moments", "bfloat16")
    _run("fashion-tiny", data["image"], tmp_path / "compact", 10, [5], compact)
    size = {k: sum(p.stat().st_size for p in (tmp_path / k / "ck").glob("*.safetensors")) for k in ("exact", "compact")}
    assert 0.45 < size["compact"] / size["exact"] < 0.55
    a, _ = read_checkpoint(tmp_path / "exact" / "ck")
    b, state = read_checkpoint(tmp_path / "compact" / "ck")
    assert state["dtypes"] == {"weights": "bfloat16", "moments": "bfloat16"}
    keys = sorted(k for k in a if k.startswith("model/"))
    w_a, w_b = (torch.cat([t[k].float().flatten() for k in keys]) for t in (a, b))
    rel = float((w_a - w_b).norm() / w_a.norm())
    assert 0.0 < rel < 1e-2, rel


def test_checkpoint_shards_and_the_printed_size(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [*_args("fashion-tiny", data["image"]), "--steps", "3", "--shard-mb", "0.1",
            "--checkpoint", str(tmp_path / "ck"), "--no-export"]
    assert train_main("fashion-tiny", args) == 0
    state = read_state(tmp_path / "ck")
    files = [tmp_path / "ck" / s["file"] for s in state["shards"]]
    assert len(files) >= 5 and all(f.stat().st_size <= 100_000 for f in files)
    total = sum(f.stat().st_size for f in files) + (tmp_path / "ck" / "state.json").stat().st_size
    err = capsys.readouterr().err
    assert f"{len(files) + 1} files, {total / 1e6:.1f} MB in all" in err
    assert not (tmp_path / "model").exists()


def test_time_budget_fixes_the_schedule(data: dict[str, Path], tmp_path: Path) -> None:
    """After calibrating, a --minutes run fixes its step count (and so its learning-rate schedule).

    ``--stop-at`` ends the session at a known step, so the test does not depend on the machine's speed.
    """
    args = [*_args("fashion-tiny", data["image"]), "--minutes", "5", "--calibrate-steps", "3", "--stop-at", "9",
            "--checkpoint", str(tmp_path / "ck"), "--no-export"]
    assert train_main("fashion-tiny", args) == 0
    state = read_state(tmp_path / "ck")
    assert state["planned_by"] == "time" and isinstance(state["total"], int) and state["step"] == 9 <= state["total"]


def test_total_minutes_spans_sessions_and_resumes_to_the_end(data: dict[str, Path], tmp_path: Path) -> None:
    args = [*_args("fashion-tiny", data["image"]), "--total-minutes", "0.1", "--minutes", "5", "--calibrate-steps", "3",
            "--stop-at", "9", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "out")]
    assert train_main("fashion-tiny", args) == 0
    state = read_state(tmp_path / "ck")
    assert state["planned_by"] == "time" and isinstance(state["total"], int) and state["step"] == min(9, state["total"])
    assert train_main("fashion-tiny", ["--resume", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "out"),
                                       "--minutes", "5"]) == 0
    assert read_state(tmp_path / "ck")["step"] == state["total"]


def test_a_failing_compile_falls_back_to_the_same_eager_run(data: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    _run("fashion-tiny", data["image"], tmp_path / "eager", 4, [])

    def broken_compile(net: torch.nn.Module, **kwargs: object):  # compiles once, then fails (as CUDA graphs can)
        calls = {"n": 0}

        def call(*args: object, **kw: object) -> torch.Tensor:
            calls["n"] += 1
            if calls["n"] == 1:
                return net(*args, **kw)
            torch.randn(3)  # it may even draw random numbers before failing
            raise RuntimeError("no C compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    _run("fashion-tiny", data["image"], tmp_path / "compiled", 4, [], ("--compile",))
    assert "torch.compile failed (RuntimeError: no C compiler); training eagerly" in capsys.readouterr().err
    a, _ = read_checkpoint(tmp_path / "eager" / "ck")
    b, _ = read_checkpoint(tmp_path / "compiled" / "ck")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_moments_keep_the_parameters_layout(data: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Fused AdamW (CUDA) needs every moment in its parameter's dtype and memory format (channels_last
    convolution weights): a resumed run must rebuild them so, including from bfloat16 moments."""
    step = torch.optim.AdamW.step

    def checked(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        for group in self.param_groups:
            for p in group["params"]:
                for key in ("exp_avg", "exp_avg_sq"):
                    moment = self.state.get(p, {}).get(key)
                    if moment is not None:
                        assert moment.dtype == p.dtype and moment.stride() == p.stride(), (key, tuple(p.shape))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", checked)
    _run("fashion-tiny", data["image"], tmp_path, 6, [3], ("--checkpoint-moments", "bfloat16"))
