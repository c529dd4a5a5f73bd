"""Weights files (decoding.data.weights): the safetensors package's format, tied weights, clear errors."""

from __future__ import annotations

import pytest
import safetensors.torch as st
import torch

from decoding.data.weights import load_tensors, save_tensors


def test_weights_files_round_trip_with_the_reference_package(tmp_path) -> None:
    ts = {
        "a": torch.randn(3, 4),
        "b": torch.arange(7, dtype=torch.int32),
        "c": torch.randn(2, 5).to(torch.bfloat16),
        "d": torch.tensor([True, False]),
        "e": torch.zeros(0, 3),
    }
    ts["tied"] = ts["a"]  # tied weights (one tensor under two names) are stored twice
    size = save_tensors(ts, tmp_path / "x.safetensors", metadata={"k": "v"})
    assert size == (tmp_path / "x.safetensors").stat().st_size
    ref = st.load_file(str(tmp_path / "x.safetensors"))
    ours, meta = load_tensors(tmp_path / "x.safetensors")
    assert meta == {"k": "v"}
    for k, v in ts.items():
        assert torch.equal(ref[k], v) and torch.equal(ours[k], v) and ours[k].dtype == v.dtype
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_tensors(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_tensors(tmp_path / "none.safetensors")
