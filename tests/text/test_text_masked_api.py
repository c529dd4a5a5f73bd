"""decoding.text_masked_api: sampling and infilling with a RADD folder; clear errors on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from decoding.data.tokenizer import TextTokenizer, default_tokenizer_path
from decoding.nn.radd import RADDNet, save_radd
from decoding.text_masked_api import generate_masked, infill_template, is_radd_model


def tiny_radd(folder: Path, seq_len: int = 24) -> Path:
    """A randomly initialized RADD folder with the shipped tokenizer (for API and example tests)."""
    torch.manual_seed(0)
    net = RADDNet(4096, dim=32, n_layers=1, n_heads=2, max_len=seq_len)
    save_radd(net, folder, extra={"seq_len": seq_len, "tokenizer": "tokenizer.model"}, dtype=torch.float16)
    shutil.copyfile(default_tokenizer_path(), folder / "tokenizer.model")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_radd(tmp_path_factory.mktemp("radd") / "radd-tiny")


def test_unconditional_cached_equals_uncached(model) -> None:
    a = generate_masked(model, steps=64, num_samples=2, length=12, seed=3, cache=False)
    b = generate_masked(model, steps=64, num_samples=2, length=12, seed=3, cache=True)
    assert a["token_ids"] == b["token_ids"] and a["texts"] == b["texts"]
    assert max(b["nfe"]) <= 13 and min(a["nfe"]) > max(b["nfe"])
    assert all(len(r) == 12 and 4096 not in r for r in b["token_ids"])


def test_infill_keeps_the_text(model) -> None:
    tok = TextTokenizer(model)
    out = generate_masked(model, infill="The ____ sat on the mat", steps=4, sampler="any_order", num_samples=3)
    ids = infill_template("The ____ sat on the mat", tok, 4096, 24)
    assert ids.count(4096) == 4
    for row in out["token_ids"]:
        assert [t for t, i in zip(row, ids, strict=True) if i != 4096] == [i for i in ids if i != 4096]
    assert all(t.startswith("The") and t.endswith("sat on the mat") for t in out["texts"])
    assert max(out["nfe"]) <= 4
    assert infill_template("a __ b", tok, 4096, 24, blank_tokens=3).count(4096) == 3


def test_bad_input(model, tmp_path) -> None:
    with pytest.raises(ValueError, match="no blank"):
        generate_masked(model, infill="The cat sat on the mat")
    with pytest.raises(ValueError, match="context of 24"):
        generate_masked(model, infill="The " + "____ " * 10)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        generate_masked(model, steps=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        generate_masked(model, sampler="ancestral")
    with pytest.raises(ValueError, match="unknown noise schedule"):
        generate_masked(model, noise="sigmoid", steps=2, length=4)
    with pytest.raises(ValueError, match="length must lie"):
        generate_masked(model, length=25)
    with pytest.raises(ValueError, match="not a RADD model folder"):
        generate_masked(tmp_path)
    assert is_radd_model(model) and not is_radd_model(tmp_path)
