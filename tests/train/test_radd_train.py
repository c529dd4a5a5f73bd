"""RADD training (decoding.train.radd): the DCE loss is the exact NLL for exact conditionals; a tiny CPU run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from decoding.core.loop import decode
from decoding.data.safetensors_lite import save_file
from decoding.data.text_corpus import load_python_stdlib, token_stream
from decoding.data.tokenizer import TextTokenizer
from decoding.nn.radd import RADDModel, load_radd
from decoding.processes.masked import Masked
from decoding.processes.masked_joint import JointConditionals, random_joint
from decoding.train.radd import TrainConfig, dce_loss, main, stratified_times, train
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
    save_file(streams, data, metadata=meta)
    out = tmp_path / "radd-tiny"
    log = train(TrainConfig(data=str(data), out=str(out), max_steps=4, seq_len=32, batch=4, dim=32, layers=1,
                            heads=2, eval_every=2, eval_windows=4, eval_repeats=1, device="cpu", progress=False))
    assert log["summary"]["steps"] == 4 and math.isfinite(log["summary"]["best_valid_loss"])
    assert len(log["valid"]) == 3
    for name in ("config.json", "model.safetensors", "tokenizer.model", "log.json", "README.md"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["mask_id"] == 4096 and cfg["seq_len"] == 32 and cfg["dtype"] == "float16"
    assert "python -m decoding.train.radd" in (out / "README.md").read_text()
    net = load_radd(out)
    model = CachedModel(RADDModel(net))
    res = decode(model, Masked(mask_id=net.mask_id, length=16), 2, steps=8, seed=0)
    assert res.x.shape == (2, 16) and not bool((res.x == net.mask_id).any())


def test_bad_options(tmp_path) -> None:
    with pytest.raises(ValueError, match="ema"):
        train(TrainConfig(ema=1.0))
    with pytest.raises(FileNotFoundError, match="python -m decoding.data.text_corpus"):
        train(TrainConfig(data=str(tmp_path / "none.safetensors"), device="cpu"))
    with pytest.raises(SystemExit):
        main(["--save-dtype", "int8"])
