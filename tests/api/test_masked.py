"""``generate`` with a masked-diffusion (RADD) model: cache exactness, infilling, clear errors."""

from __future__ import annotations

import pytest

import decoding as dc
from decoding.api.templates import parse_template
from decoding.data.tokenizer import TextTokenizer
from tests.api.fixtures import tiny_radd


@pytest.fixture(scope="module")
def radd(tmp_path_factory):
    return dc.load(tiny_radd(tmp_path_factory.mktemp("radd") / "radd-tiny"), device="cpu")


def test_unconditional_cached_equals_uncached(radd) -> None:
    a = dc.generate(radd, n=2, steps=64, length=12, seed=3, cache=False)
    b = dc.generate(radd, n=2, steps=64, length=12, seed=3)
    assert radd.kind == "masked-diffusion" and b.settings["cache"] is True
    assert a.tokens == b.tokens and a.text == b.text and b.finish_reason == ["complete"] * 2
    assert max(b.nfe) <= 13 and min(a.nfe) > max(b.nfe)
    assert all(len(r) == 12 and 4096 not in r for r in b.tokens)


def test_infill_keeps_the_text(radd) -> None:
    tok = TextTokenizer()
    out = dc.generate(radd, "The ____ sat on the mat", n=3, steps=4, sampler="any_order")
    ids, blank = parse_template("The ____ sat on the mat", tok, 24)
    assert sum(blank) == 4
    for row in out.tokens:
        assert [t for t, b in zip(row, blank, strict=True) if not b] == [i for i, b in zip(ids, blank, strict=True) if not b]
    assert all(t.startswith("The") and t.endswith("sat on the mat") for t in out.text)
    assert max(out.nfe) <= 4
    assert sum(parse_template("a __ b", tok, 24, blank_tokens=3)[1]) == 3


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        ("The cat sat on the mat", {}, "no blank"),
        ("The " + "____ " * 10, {}, "context of 24"),
        (None, dict(steps=0), "steps must be >= 1"),
        (None, dict(sampler="ancestral"), "unknown sampler"),
        (None, dict(noise="sigmoid", steps=2, length=4), "unknown noise schedule"),
        (None, dict(length=25), "length must lie"),
        ("a ____ b", dict(length=4), "length applies to unconditional samples"),
        (None, dict(blank_tokens=2), "blank_tokens applies to infill templates"),
        (None, dict(max_new_tokens=4), "option 'max_new_tokens' does not apply to masked-diffusion models"),
        (None, dict(grammar="json"), "option 'grammar' does not apply to masked-diffusion models"),
        (None, dict(sampling=dc.Sampling(top_p=0.9)), "sampling.top_p does not apply to masked-diffusion models"),
        (None, dict(class_label=1), "option 'class_label' does not apply"),
        (None, dict(steps=2.5), "steps must be a whole number"),
        (None, dict(cache="no"), "cache must be True or False"),
        ("a ____ b", dict(blank_tokens=2.5), "blank_tokens must be a whole number"),
        (["a ____ b"], {}, "takes one infill template"),
    ],
)
def test_bad_input(radd, prompt, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        dc.generate(radd, prompt, **kwargs)
