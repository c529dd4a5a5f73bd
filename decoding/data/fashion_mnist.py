"""Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) from its IDX files.

The files come from the Debian package ``dataset-fashion-mnist``, which installs
``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
Plain (uncompressed) IDX files are read too. The ``root`` argument (``decoding train ... --data DIR``)
or the environment variable ``DECODING_FASHION_MNIST`` points at another folder, e.g. a copy of the
four ``.gz`` files inside the repository on a machine without the package or internet.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}
_INSTALL = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files land in "
    f"{DEFAULT_ROOT}), or pass root=/path/to/folder (`decoding train ... --data DIR`; or set "
    "DECODING_FASHION_MNIST) pointing at the "
    "IDX files train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz]"
)


class DatasetNotFoundError(FileNotFoundError):
    """Raised when the Fashion-MNIST IDX files cannot be found; the message says how to install them."""


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        p = root / name
        if p.is_file():
            return p
    raise DatasetNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {root}; {_INSTALL}")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array of its stored dtype.

    Only the unsigned-byte type (0x08), the one MNIST-style datasets use, is supported.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported, got type code {data[2]:#x}")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 1
    if len(data) - offset != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes) but the file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def resolve_root(root: str | Path | None = None) -> Path:
    """The folder holding the IDX files: ``root``, else ``$DECODING_FASHION_MNIST``, else the Debian path."""
    if root is None:
        root = os.environ.get("DECODING_FASHION_MNIST") or DEFAULT_ROOT
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"Fashion-MNIST folder {root} does not exist; {_INSTALL}")
    return root


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> tuple[Tensor, Tensor]:
    """Load a split of Fashion-MNIST.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: folder with the IDX files (default: ``$DECODING_FASHION_MNIST`` or
            ``/usr/share/datasets/fashion-mnist``).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)`` with labels in ``[0, 10)``.

    Raises:
        ValueError: unknown split or malformed files.
        DatasetNotFoundError: the files are missing (the message says how to install them).
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = resolve_root(root)
    prefix = _PREFIX[split]
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def _model_range(images: Tensor, device: torch.device | str, channels_last: bool) -> Tensor:
    """uint8 ``(N, 28, 28)`` -> float ``(N, 1, 28, 28)`` in [-1, 1] on ``device``."""
    x = images.to(device)[:, None].float().div(127.5).sub(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def fashion_splits(
    root: str | Path | None = None, limit_train: int | None = None, limit_test: int | None = None,
    device: torch.device | str = "cpu", channels_last: bool = False,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], dict[str, object]]:
    """Training and test sets on ``device``, as trainers use them.

    Returns:
        ``(images, labels)`` of the train split and of the test split (the first ``limit_*``
        examples when given): images float ``(N, 1, 28, 28)`` in [-1, 1] (channels_last when asked),
        labels int64 ``(N,)``; and a JSON description (folder, sizes).
    """
    out = []
    for split, limit in (("train", limit_train), ("test", limit_test)):
        images, labels = load_fashion_mnist(split, root)
        if limit:
            images, labels = images[:limit], labels[:limit]
        out.append((_model_range(images, device, channels_last), labels.to(device)))
    info = {"dataset": "Fashion-MNIST", "folder": str(resolve_root(root)), "train_images": int(out[0][0].shape[0]),
            "valid_images": int(out[1][0].shape[0]), "valid_split": "test"}
    return out[0], out[1], info
