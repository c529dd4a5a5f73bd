"""``generate`` with an any-subset model: templates, ASSD and sequential infilling, clear errors."""

from __future__ import annotations

import pytest

import decoding as dc
from decoding.api.templates import parse_template
from decoding.data.tokenizer import TextTokenizer
from tests.any_subset.tiny import tiny_model

TEMPLATE = "The old ______ sat on the ____ ."


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    return dc.load(tiny_model(tmp_path_factory.mktemp("arm") / "as-arm-tiny"), device="cpu")


def test_template_blanks_and_errors() -> None:
    tok = TextTokenizer()
    ids, blank = parse_template("The ____ sat on the __ .", tok, 64)
    assert sum(blank) == 6 and len(ids) == len(blank)
    assert tok.decode([i for i, b in zip(ids, blank, strict=True) if not b]).startswith("The")
    assert sum(parse_template("A __ b ____", tok, 64, blank_tokens=3)[1]) == 6
    with pytest.raises(ValueError, match="no blank"):
        parse_template("no blanks here", tok, 64)
    with pytest.raises(ValueError, match="context"):
        parse_template("x " + "_" * 70, tok, 64)
    with pytest.raises(ValueError, match="blank_tokens must be >= 1"):
        parse_template("x __", tok, 64, blank_tokens=0)


def test_infill_keeps_the_text_and_counts_nfe(arm) -> None:
    a = dc.generate(arm, TEMPLATE, n=3, speculative=4, seed=1)
    s = dc.generate(arm, TEMPLATE, n=3, speculative=0, seed=1)
    assert arm.kind == "any-subset" and a.settings["blank_count"] == 10
    for out in (a, s):
        assert len(out) == 3 and out.finish_reason == ["complete"] * 3
        for text in out.text:
            assert text.startswith("The old") and text.rstrip().endswith(".")
    assert all(n <= 10 for n in a.nfe) and all(n == 10 for n in s.nfe)
    assert dc.generate(arm, TEMPLATE, speculative=4, seed=1).text == dc.generate(arm, TEMPLATE, speculative=4, seed=1).text


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        (None, {}, "give an infill template"),
        (TEMPLATE, dict(speculative=-1), "speculative must be >= 1"),
        (TEMPLATE, dict(order="backwards"), "unknown order"),
        (TEMPLATE, dict(speculative=0, adaptive=True), "adaptive applies to speculative decoding"),
        (TEMPLATE, dict(steps=8), "option 'steps' does not apply to any-subset models"),
        (TEMPLATE, dict(cache=False), "option 'cache' does not apply to any-subset models"),
        (TEMPLATE, dict(stop=["x"]), "option 'stop' does not apply to any-subset models"),
        (TEMPLATE, dict(sampling={"min_p": 0.1}), "sampling.min_p does not apply to any-subset models"),
        (TEMPLATE, dict(speculative=2.9), "speculative must be a whole number"),
        (TEMPLATE, dict(adaptive="no"), "adaptive must be True or False"),
        ([TEMPLATE], {}, "takes one infill template"),
    ],
)
def test_bad_input(arm, prompt, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        dc.generate(arm, prompt, **kwargs)


@pytest.mark.gpu
def test_assd_infill_on_cuda(tmp_path) -> None:
    arm = dc.load(tiny_model(tmp_path / "as-arm-tiny"), device="cuda")
    out = dc.generate(arm, TEMPLATE, n=4, speculative=4, seed=0)
    assert all(n <= 10 for n in out.nfe) and all(t.startswith("The old") for t in out.text)
