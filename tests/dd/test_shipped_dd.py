"""The shipped Distilled Decoding student ``models/fashion-ar-dd`` (issue 20, arXiv 2412.17153): it reproduces its
teacher's noise -> tokens map and draws the asked-for classes in one or two network calls."""

from __future__ import annotations

import json

import pytest
import torch

import decoding as dc
from decoding.api.image_ar import load_teacher_parts
from decoding.api.zoo import models_root, resolve
from decoding.core.loop import decode
from decoding.dd.flow import TokenFlow
from decoding.dd.pairs import map_noise
from decoding.dd.steps import DDProcess
from decoding.evals.classifier import class_accuracy, load_classifier

SHIPPED = models_root() / "fashion-ar-dd"
pytestmark = [
    pytest.mark.one_thread,
    pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="models/fashion-ar-dd is not shipped"),
]
#: the card's figures (docs/perf/dd.md, *The shipped student*): 0.497 of held-out tokens from noise in one step
#: (0.506 / 0.504 in one / two steps on this test's 40 draws); class accuracy 0.932 / 0.924 (one / two steps) on
#: 10,000 samples; chance agreement is 1/256, the untrained student's 0.027
AGREE_1 = 0.3
CLASS_ACC = 0.75


def test_shipped_student_card_and_weights() -> None:
    """Kind image-ar-dd over the shipped teacher's tokenizer, re-entry at token 24, bf16 weights under 16 MB."""
    assert resolve("fashion-ar-dd").kind == "image-ar-dd"
    card = json.loads((SHIPPED / "config.json").read_text())
    assert card["tokenizer"]["name"] == "fashion-vq" and card["dd"]["reenter"] == 24 and card["dd"]["guidance"] == 1.5
    assert card["dd"]["uncond_share"] > 0  # it also samples without a class
    assert (SHIPPED / "model.safetensors").stat().st_size <= 16 * 2**20


def test_shipped_student_reproduces_the_teachers_map() -> None:
    """On fresh noise (not in its pairs) the one-step student picks the token of the teacher's exact map (CFG 1.5,
    64 flow steps) for most positions, and the two-step use, which re-enters with its own first 24 tokens, does
    not fall below it by much. Chance is 1/256; the card's held-out figure is in its README."""
    teacher, vq, _ = load_teacher_parts("fashion-ar", torch.device("cpu"))
    student = dc.load("fashion-ar-dd", device="cpu")
    g = torch.Generator().manual_seed(20261207)
    labels = torch.arange(40) % 10
    noise = torch.randn(40, 49, 8, generator=g)
    want = map_noise(teacher, vq.codes.detach(), labels, noise, TokenFlow())
    process = DDProcess(49, student.reenter)
    agree = {}
    for steps in (1, 2):
        got = decode(student.model, process, {"noise": noise, "labels": labels}, steps=steps, seed=0).x
        agree[steps] = float((got == want).float().mean())
    assert agree[1] >= AGREE_1 and agree[2] >= AGREE_1 - 0.05, agree


def test_shipped_student_samples_the_asked_classes() -> None:
    """40 samples in one and in two steps (4 of each class): the classifier (0.92 on real test images) agrees
    with the asked class on at least the share below (the card's figures on 1,000 samples are in its README)."""
    h = dc.load("fashion-ar-dd", device="cpu")
    labels = torch.arange(40) % 10
    net = load_classifier("fashion-classifier")
    for steps in (1, 2):
        out = dc.generate(h, class_label=labels.tolist(), n=40, steps=steps, seed=0)
        assert out.images.shape == (40, 1, 28, 28) and torch.isfinite(out.images).all() and max(out.nfe) == steps
        assert class_accuracy(net, out.images, labels) >= CLASS_ACC, steps
