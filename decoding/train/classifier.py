"""Train the Fashion-MNIST classifier of :mod:`decoding.evals.classifier` (minutes on a CPU).

    python -m decoding.train.classifier --epochs 4 --out models/fashion-classifier

AdamW with a one-cycle learning rate, random 2-pixel shifts as augmentation, fixed seed. Writes
``config.json``, ``model.safetensors`` and ``train_log.json`` (per-epoch test accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from decoding.data.fashion_mnist import CLASSES, load_fashion_mnist
from decoding.evals.classifier import CLASSIFIER_FORMAT, FashionCNN, predict, to_model_range
from decoding.models.image import atomic_write_bytes


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Shift each gray image ``(B, 1, H, W)`` by up to ``max_shift`` pixels; uncovered pixels are background (-1)."""
    b, _, h, w = x.shape
    pad = F.pad(x[:, 0], (max_shift,) * 4, value=-1.0)  # (B, H + 2m, W + 2m)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = dy[:, None] + torch.arange(h)[None, :]  # (B, H)
    cols = dx[:, None] + torch.arange(w)[None, :]  # (B, W)
    return pad[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]


def train_classifier(
    epochs: int = 4, batch_size: int = 128, lr: float = 3e-3, seed: int = 0, limit: int | None = None,
    data_root: str | None = None, threads: int | None = None, test_limit: int | None = None,
) -> tuple[FashionCNN, dict]:
    """Train on the 60k training images; return the network and a log with test accuracy per epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images, labels = load_fashion_mnist("train", data_root)
    test_images, test_labels = load_fashion_mnist("test", data_root)
    if limit:
        images, labels = images[:limit], labels[:limit]
    if test_limit:
        test_images, test_labels = test_images[:test_limit], test_labels[:test_limit]
    x = to_model_range(images)
    net = FashionCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = (x.shape[0] + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    log: dict = {"epochs": []}
    start = time.perf_counter()
    from tqdm.auto import tqdm

    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=g)
        total = 0.0
        for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(net(random_shift(x[idx], g)), labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        net.eval()
        acc = float((predict(net, test_images) == test_labels).float().mean())
        log["epochs"].append({"epoch": epoch + 1, "train_loss": round(total / x.shape[0], 4), "test_accuracy": round(acc, 4),
                              "seconds": round(time.perf_counter() - start, 1)})
        print(f"epoch {epoch + 1}: train loss {total / x.shape[0]:.4f}, test accuracy {acc:.4f}", flush=True)
    log["test_accuracy"] = log["epochs"][-1]["test_accuracy"]
    log["train_images"] = int(x.shape[0])
    log["test_images"] = int(test_images.shape[0])
    return net, log


def save_classifier(net: FashionCNN, out: str | Path, log: dict) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``train_log.json`` atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata={"format": CLASSIFIER_FORMAT})
    tmp.chmod(0o644)
    tmp.replace(out / "model.safetensors")
    config = {"format": CLASSIFIER_FORMAT, "model": net.config, "classes": list(CLASSES), "input_range": [-1.0, 1.0],
              "test_accuracy": log["test_accuracy"]}
    atomic_write_bytes(out / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(out / "train_log.json", (json.dumps(log, indent=2) + "\n").encode())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decoding.train.classifier", description="Train the Fashion-MNIST classifier.")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (tests)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="models/fashion-classifier")
    a = p.parse_args(argv)
    try:
        net, log = train_classifier(a.epochs, a.batch_size, a.lr, a.seed, a.limit, a.data_root, a.threads)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log["command"] = "python -m decoding.train.classifier " + " ".join(argv if argv is not None else sys.argv[1:])
    log["torch"] = torch.__version__
    save_classifier(net, a.out, log)
    print(f"wrote {a.out} (test accuracy {log['test_accuracy']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
