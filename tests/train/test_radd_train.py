"""RADD training (decoding.train.radd): the DCE loss is the exact NLL for exact conditionals; a tiny CPU run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decoding.cli.train import train_main
from decoding.core.loop import decode
from decoding.data.text_corpus import load_python_stdlib, token_stream
from decoding.data.tokenizer import TextTokenizer
from decoding.data.weights import save_tensors
from decoding.nn.radd import RADDModel, load_radd
from decoding.processes.masked import Masked
from decoding.processes.masked_joint import JointConditionals, random_joint
from decoding.train.radd import RaddConfig, dce_loss, stratified_times
from decoding.train.task import TrainOptions
from decoding.wrappers.cache import CachedModel


def test_dce_equals_nll_for_exact_conditionals() -> None:
    """RADD Thm. 2 / MDLM: with the exact conditionals, E_t,mask[DCE] = -log p(x0) / L (any x0)."""
    joint = random_joint(3, 4, torch.Generator().manual_seed(5), zeros=0.0)
    model = JointConditionals(joint)
    g = torch.Generator().manual_seed(0)
    for seq in ([0, 1, 2, 1], [2, 2, 0, 0]):
        x0 = torch.tensor(seq).expand(200_000, 4)
        t = stratified_times(x0.shape[0], 1e-4, g)
        est = float(dce_loss(lambda xt: model.conditionals(xt).log(), x0, 3, t, g))
        exact = -math.log(float(model.probability(x0[:1]))) / 4
        assert abs(est - exact) < 0.02 * exact, (est, exact)


def test_dce_of_a_worse_model_is_larger() -> None:
    joint = random_joint(3, 4, torch.Generator().manual_seed(5), zeros=0.0)
    model = JointConditionals(joint)
    g = torch.Generator().manual_seed(1)
    x0 = model.seqs[torch.multinomial(joint.reshape(-1), 20_000, replacement=True, generator=g)]
    t = stratified_times(x0.shape[0], 1e-3, g)
    good = float(dce_loss(lambda xt: model.conditionals(xt).log(), x0, 3, t, torch.Generator().manual_seed(2)))
    flat = float(dce_loss(lambda xt: torch.full((*xt.shape, 3), -math.log(3)), x0, 3, t, torch.Generator().manual_seed(2)))
    assert good < flat and abs(good - model.entropy() / 4) < 0.05


def test_tiny_cpu_training_run(tmp_path) -> None:
    tok = TextTokenizer()
    streams = {s: token_stream(load_python_stdlib(s, max_files=3), tok.encode, tok.eos_id) for s in ("train", "valid")}
    data = tmp_path / "tokens.safetensors"
    meta = {"corpus": "python-stdlib", "tokenizer": str(tok.path), "tokenizer_sha256": tok.sha256,
            "vocab_size": str(tok.vocab_size), "eot_id": str(tok.eos_id)}
    save_tensors(streams, data, metadata=meta)
    out = tmp_path / "radd-tiny"
    args = ["--data", str(data), "--out", str(out), "--checkpoint", str(tmp_path / "ck"), "--steps", "4", "--seq-len", "32",
            "--batch-size", "4", "--dim", "32", "--layers", "1", "--heads", "2", "--val-every", "2", "--eval-windows", "4",
            "--eval-repeats", "1", "--device", "cpu", "--no-progress"]
    assert train_main("radd-brown", args) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == 4 and math.isfinite(log["final_valid_loss"]) and len(log["history"]["valid"]) == 3
    for name in ("config.json", "model.safetensors", "tokenizer.model", "train_log.json", "README.md", "loss.png"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["mask_id"] == 4096 and cfg["seq_len"] == 32 and cfg["dtype"] == "float16"
    card = (out / "README.md").read_text()
    assert "# radd-brown" in card and "decoding train radd-brown" in card and "4 steps" in card
    net = load_radd(out)
    model = CachedModel(RADDModel(net))
    res = decode(model, Masked(mask_id=net.mask_id, length=16), 2, steps=8, seed=0)
    assert res.x.shape == (2, 16) and not bool((res.x == net.mask_id).any())


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="--eps"):
        RaddConfig(eps=1.0).check()
    with pytest.raises(ValueError, match="multiple of --heads"):
        RaddConfig(dim=30, heads=4).check()
    with pytest.raises(ValueError, match="--ema-decay"):
        TrainOptions(steps=1, ema_decay=1.0).check()
