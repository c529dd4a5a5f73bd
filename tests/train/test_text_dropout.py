"""``--dropout`` of the text trainers (radd-brown, as-arm-brown): off in validation, exported, resumable, and
with ``--dropout 0`` the same run as before the option existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from decoding.cli.train import train_main
from decoding.nn.any_subset import AnySubsetLM, load_any_subset
from decoding.nn.radd import load_radd
from decoding.train.as_arm import AsArmConfig, AsArmTask
from decoding.train.checkpoint import read_checkpoint
from decoding.train.radd import RaddConfig, RaddTask
from decoding.train.recipes import recipe
from tests.train.helpers import token_file

MODELS = ["radd-brown", "as-arm-brown"]

# Six steps of each model with the options of _args (seed 3), run with the trainer before --dropout existed
# (git main e4213ba, CPU, float32): validation losses, logged training losses, sum of |weights|.
_BEFORE = {
    "radd-brown": ([2.609860897064209, 2.609917163848877, 2.609992742538452], [2.5495948791503906, 2.663386027018229],
                   117.3146848465326),
    "as-arm-brown": ([2.771840810775757, 2.771892547607422, 2.77195405960083], [2.7674166361490884, 2.778427759806315],
                     117.53942660394023),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return token_file(tmp_path_factory.mktemp("data") / "tokens.safetensors")


def _args(data: Path, folder: Path, *extra: str) -> list[str]:
    return ["--device", "cpu", "--no-progress", "--seed", "3", "--data", str(data), "--batch-size", "8", "--seq-len", "16",
            "--dim", "16", "--layers", "1", "--heads", "2", "--eval-windows", "8", "--val-every", "3", "--log-every", "3",
            "--checkpoint", str(folder / "ck"), "--out", str(folder / "out"), *extra]


@pytest.mark.parametrize("model", MODELS)
def test_dropout_zero_is_the_run_before_the_option(model: str, data: Path, tmp_path: Path) -> None:
    assert recipe(model).config["dropout"] == 0.1  # the preset; 0 reproduces the runs before the option
    assert train_main(model, _args(data, tmp_path, "--steps", "6", "--no-export", "--dropout", "0")) == 0
    tensors, state = read_checkpoint(tmp_path / "ck")
    valid, train, weights = _BEFORE[model]
    assert state["task"]["config"]["dropout"] == 0.0
    torch.testing.assert_close([r["loss"] for r in state["history"]["valid"]], valid, rtol=1e-5, atol=0)
    torch.testing.assert_close([r[1] for r in state["history"]["train"]], train, rtol=1e-5, atol=0)
    total = float(sum(v.double().abs().sum() for k, v in tensors.items() if k.startswith("model/")))
    assert total == pytest.approx(weights, rel=1e-6)


def _task(model: str, data: Path, dropout: float) -> RaddTask | AsArmTask:
    sizes = {"data": str(data), "seq_len": 16, "dim": 16, "layers": 1, "heads": 2, "eval_windows": 8, "dropout": dropout}
    task = RaddTask(RaddConfig(**sizes)) if model == "radd-brown" else AsArmTask(AsArmConfig(**sizes))
    task.setup(torch.device("cpu"))
    return task


@pytest.mark.parametrize("model", MODELS)
def test_dropout_changes_the_training_loss_not_the_validation(model: str, data: Path) -> None:
    plain, drop = _task(model, data, 0.0), _task(model, data, 0.3)
    torch.manual_seed(0)
    a = plain.build()
    torch.manual_seed(0)
    b = drop.build()
    idx = torch.arange(0, 64, 8)

    @torch.no_grad()
    def loss(task: RaddTask | AsArmTask, net: torch.nn.Module) -> float:
        return float(task.loss(net, idx, torch.Generator().manual_seed(5)))

    assert loss(plain, a.train()) == loss(plain, a.eval())  # no dropout: the mode does not matter
    assert loss(drop, b.train()) != loss(drop, b.eval()) == loss(plain, a.eval())
    with torch.no_grad():
        assert plain.validate(a.eval()) == drop.validate(b.eval())


@pytest.mark.parametrize("model", MODELS)
def test_dropout_is_exported_and_loads_in_eval_mode(model: str, data: Path, tmp_path: Path) -> None:
    assert train_main(model, _args(data, tmp_path, "--steps", "3", "--dropout", "0.2")) == 0
    out = tmp_path / "out"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["transformer"]["dropout"] == 0.2
    assert "dropout 0.2" in (out / "README.md").read_text()
    if model == "radd-brown":
        net = load_radd(out)
        x = torch.randint(0, 17, (2, 16))
    else:
        net, _ = load_any_subset(out)
        assert AnySubsetLM.from_pretrained(out).net.training is False
        x = torch.randint(0, 16, (2, 16))
    assert net.cfg.dropout == 0.2 and not net.training
    if model == "radd-brown":
        with torch.no_grad():
            assert torch.equal(net(x), net(x))
    # a config.json written before the option (no "dropout" entry) still loads, with dropout 0
    del cfg["transformer"]["dropout"]
    (out / "config.json").write_text(json.dumps(cfg))
    again = load_radd(out) if model == "radd-brown" else load_any_subset(out)[0]
    assert again.cfg.dropout == 0.0


def test_resumed_run_with_dropout_is_bit_identical(data: Path, tmp_path: Path) -> None:
    """Dropout draws from the global CPU generator, which the checkpoint restores."""
    for folder, stops in (("straight", []), ("split", [4])):
        where = tmp_path / folder
        first = _args(data, where, "--steps", "8", "--dropout", "0.2", "--no-export")
        assert train_main("radd-brown", first + ([f"--stop-at={stops[0]}"] if stops else [])) == 0
        if stops:
            assert train_main("radd-brown", ["--resume", "--checkpoint", str(where / "ck"), "--no-export"]) == 0
    a, sa = read_checkpoint(tmp_path / "straight" / "ck")
    b, sb = read_checkpoint(tmp_path / "split" / "ck")
    assert sa["step"] == sb["step"] == 8 and sa["history"] == sb["history"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_dropout_option() -> None:
    with pytest.raises(ValueError, match="--dropout must lie in"):
        RaddConfig(dropout=1.0).check()
    with pytest.raises(ValueError, match="--dropout must lie in"):
        AsArmConfig(dropout=-0.5).check()
