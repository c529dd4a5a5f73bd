"""The Fashion-MNIST IDX loader: real files when installed, hand-made IDX files, clear errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from decoding.data.fashion_mnist import DEFAULT_ROOT, DatasetNotFoundError, load_fashion_mnist, read_idx

HAVE_DATA = (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_split(root: Path, prefix: str, n: int, compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.uint8)
    ext = ".gz" if compress else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_reads_hand_made_idx_files(tmp_path: Path, compress: bool) -> None:
    images, labels = make_split(tmp_path, "t10k", 5, compress)
    x, y = load_fashion_mnist("test", root=tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (5, 28, 28)
    assert y.dtype == torch.int64 and y.shape == (5,)
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)


def test_missing_dataset_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path / "nowhere")
    make_split(tmp_path, "t10k", 3)
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist("train", root=tmp_path)


def test_bad_split_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist("validation", root=tmp_path)
    bad = tmp_path / "x.idx"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "y.idx"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]))
    with pytest.raises(ValueError, match="header says"):
        read_idx(short)


def test_environment_variable_points_at_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_split(tmp_path, "train", 4)
    monkeypatch.setenv("DECODING_FASHION_MNIST", str(tmp_path))
    x, _ = load_fashion_mnist("train")
    assert x.shape == (4, 28, 28)


@pytest.mark.skipif(not HAVE_DATA, reason="apt-get install dataset-fashion-mnist")
def test_real_dataset() -> None:
    x, y = load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert torch.equal(torch.bincount(y), torch.full((10,), 6000))
    xt, yt = load_fashion_mnist("test")
    assert xt.shape == (10000, 28, 28) and torch.equal(torch.bincount(yt), torch.full((10,), 1000))
    # published pixel statistics of the training set: mean 0.2860, std 0.3530 (in [0, 1])
    assert abs(float(x.float().mean()) / 255 - 0.2860) < 1e-3
