"""The shipped students ``models/fashion-large-distill-{4,2,1}`` load, sample with their own step count, and draw the class asked for."""

from __future__ import annotations

import json

import pytest
import torch

import decoding as dc
from decoding.api.distilled import DistilledHandle
from decoding.api.zoo import models_root, resolve
from decoding.evals.classifier import class_accuracy, load_classifier

pytestmark = pytest.mark.one_thread
STEPS = (4, 2, 1)


def shipped(n: int) -> bool:
    return (models_root() / f"fashion-large-distill-{n}" / "model.safetensors").is_file()


@pytest.mark.parametrize("n", STEPS)
def test_shipped_student_card_and_refusals(n: int) -> None:
    if not shipped(n):
        pytest.skip(f"models/fashion-large-distill-{n} is not shipped")
    folder = models_root() / f"fashion-large-distill-{n}"
    assert resolve(f"fashion-large-distill-{n}").kind == "distilled-diffusion"
    assert (folder / "model.safetensors").stat().st_size < 16 * 2**20
    card = json.loads((folder / "config.json").read_text())["distill"]
    assert card["stage"] == 2 and card["steps"] == n and card["teacher_steps"] == 2 * n
    assert card["origin"] == "models/fashion-large" and "/root/" not in (folder / "config.json").read_text()
    handle = dc.load(f"fashion-large-distill-{n}", device="cpu")
    assert isinstance(handle, DistilledHandle) and handle.steps == n
    with pytest.raises(dc.OptionError, match=f"{n}-step distilled student: it samples with steps={n} only"):
        dc.generate(handle, class_label=0, steps=n + 1)


@pytest.mark.parametrize("n", STEPS)
def test_shipped_student_draws_the_class_asked_for(n: int) -> None:
    """100 samples (10 a class, CFG 1.5): the shipped classifier agrees with the asked class on at least 90
    (docs/perf/distill.md, *Training on the H100*); the same seed gives the same images."""
    if not shipped(n) or not (models_root() / "fashion-classifier" / "model.safetensors").is_file():
        pytest.skip("the students or the classifier are not shipped")
    handle = dc.load(f"fashion-large-distill-{n}", device="cpu")
    labels = torch.arange(100) % 10
    out = dc.generate(handle, class_label=labels, n=100, steps=n, seed=0)
    assert out.images.shape == (100, 1, 28, 28) and out.nfe == [float(n)] * 100
    assert torch.isfinite(out.images).all() and out.images.std() > 0.2  # not a blank or collapsed output
    assert class_accuracy(load_classifier("fashion-classifier"), out.images, labels) >= 0.90
    first, again = (dc.generate(handle, class_label=labels[:8], n=8, steps=n, seed=3).images for _ in range(2))
    assert torch.equal(first, again)


def test_shipped_stage1_student_samples_with_any_steps_at_one_call_each() -> None:
    """The stage-1 student (w-conditioned, Meng et al.'s stage 1): any step count, one network call a step
    with guidance; 50 samples at 8 steps draw the asked class on at least 45."""
    folder = models_root() / "fashion-large-distill-stage1"
    if not (folder / "model.safetensors").is_file() or not (models_root() / "fashion-classifier" / "model.safetensors").is_file():
        pytest.skip("models/fashion-large-distill-stage1 or the classifier is not shipped")
    card = json.loads((folder / "config.json").read_text())["distill"]
    assert card["stage"] == 1 and card["origin"] == "models/fashion-large"
    handle = dc.load("fashion-large-distill-stage1", device="cpu")
    assert isinstance(handle, DistilledHandle) and handle.steps is None
    labels = torch.arange(50) % 10
    out = dc.generate(handle, class_label=labels, n=50, steps=8, seed=0)
    assert out.nfe == [8.0] * 50  # CFG would take 16
    assert class_accuracy(load_classifier("fashion-classifier"), out.images, labels) >= 0.90
