"""``decoding.load``: zoo names, folders, kinds from the card, and clear errors."""

from __future__ import annotations

import json

import pytest

import decoding as dc
from decoding.api.zoo import card_kind, resolve
from tests.api.fixtures import tiny_radd


def test_zoo_names_and_kinds() -> None:
    names = dc.zoo_names()
    assert {"smollm2", "fashion-large", "fashion-small", "radd-brown", "as-arm-brown"} <= set(names)
    kinds = {n: resolve(n).kind for n in names}
    assert kinds["smollm2"] == "causal-lm" and kinds["radd-brown"] == "masked-diffusion"
    assert kinds["as-arm-brown"] == "any-subset" and kinds["fashion-large"] == "image-diffusion"
    assert resolve("fashion-large").defaults == {"solver": "dpmpp_2m", "steps": 10}


def test_card_kinds() -> None:
    assert card_kind({"kind": "any-subset"}) == "any-subset"
    assert card_kind({"model_type": "radd"}) == "masked-diffusion"
    assert card_kind({"architectures": ["MistralForCausalLM"]}) == "causal-lm"
    assert card_kind({"model_type": "llama"}) == "causal-lm"
    assert card_kind({"model_type": "vit"}) is None
    with pytest.raises(ValueError, match="known kinds"):
        card_kind({"kind": "telepathy"})


def test_loads_a_folder_and_its_kind(tmp_path) -> None:
    radd = dc.load(tiny_radd(tmp_path / "r"), device="cpu")
    assert radd.kind == "masked-diffusion" and radd.device.type == "cpu"


def test_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(dc.api.ModelNotFoundError, match="available: .*fashion-large.*smollm2"):
        dc.load("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        dc.load(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="does not say what kind"):
        dc.load(tmp_path / "odd")
    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(FileNotFoundError, match="not a .gguf"):
        dc.load(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="does not generate"):
        dc.load("fashion-classifier", device="cpu")
    with pytest.raises(dc.OptionError, match="option 'engine' does not apply to image-diffusion"):
        dc.load("fashion-small", device="cpu", engine="hf")
    with pytest.raises(dc.OptionError, match="needs a model from decoding.load"):
        dc.generate(object())
