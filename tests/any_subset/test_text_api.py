"""The text API: templates, loading an AS-ARM folder, ASSD and sequential infilling."""

from __future__ import annotations

import pytest

from decoding.data.tokenizer import TextTokenizer
from decoding.text_assd_api import assd_infill, is_as_arm_model, parse_infill_template
from tests.any_subset.tiny import tiny_model


def test_template_blanks_and_errors():
    tok = TextTokenizer()
    ids, blank = parse_infill_template("The ____ sat on the __ .", tok, 64)
    assert sum(blank) == 6 and len(ids) == len(blank)
    assert tok.decode([i for i, b in zip(ids, blank, strict=True) if not b]).startswith("The")
    _, blank = parse_infill_template("A __ b ____", tok, 64, blank_tokens=3)
    assert sum(blank) == 6
    with pytest.raises(ValueError, match="no blank"):
        parse_infill_template("no blanks here", tok, 64)
    with pytest.raises(ValueError, match="context"):
        parse_infill_template("x " + "_" * 70, tok, 64)


def test_infill_keeps_the_text_and_counts_nfe(tmp_path):
    folder = tiny_model(tmp_path / "as-arm-tiny")
    assert is_as_arm_model(folder) and not is_as_arm_model(tmp_path)
    template = "The old ______ sat on the ____ ."
    a = assd_infill(folder, template, k=4, num_samples=3, seed=1)
    s = assd_infill(folder, template, k=0, num_samples=3, seed=1)
    assert a["method"] == "assd" and s["method"] == "sequential" and a["tokens"] == 10
    for out in (a, s):
        assert len(out["texts"]) == 3
        for text in out["texts"]:
            assert text.startswith("The old") and text.rstrip().endswith(".")
    assert all(n <= 10 for n in a["nfe"]) and all(n == 10 for n in s["nfe"])
    assert assd_infill(folder, template, k=4, seed=1)["texts"] == assd_infill(folder, template, k=4, seed=1)["texts"]
    with pytest.raises(ValueError, match="not an AS-ARM"):
        assd_infill(tmp_path, template)


@pytest.mark.gpu
def test_assd_infill_on_cuda(tmp_path):
    folder = tiny_model(tmp_path / "as-arm-tiny")
    out = assd_infill(folder, "The old ______ sat on the ____ .", k=4, num_samples=4, seed=0, device="cuda")
    assert all(n <= 10 for n in out["nfe"]) and all(t.startswith("The old") for t in out["texts"])
