"""Small data sets written on the fly for the trainer tests (no Debian package, no corpus needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from decoding.data.weights import save_tensors
from tests.data.test_fashion_mnist import write_idx


def fashion_folder(root: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """A folder of Fashion-MNIST-format IDX files: class ``c`` is a bright bar on rows ``2c..2c+4`` over faint noise."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, (n,), dtype=np.uint8)
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c : 2 * c + 5, 4:24] = 230
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def token_file(path: Path, vocab: int = 16, runs: int = 4000) -> Path:
    """A token file whose stream has structure: runs of an ascending pattern from random starting points."""
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, vocab, (runs,), generator=g)
    stream = ((starts[:, None] + torch.arange(8)) % vocab).flatten().to(torch.int32)
    cut = int(0.875 * stream.numel())
    meta = {"corpus": "synthetic", "vocab_size": str(vocab), "eot_id": "2", "tokenizer": "none"}
    save_tensors({"train": stream[:cut], "valid": stream[cut:]}, path, metadata=meta)
    return path
