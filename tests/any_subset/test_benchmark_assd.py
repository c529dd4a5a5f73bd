"""The ASSD infilling benchmark runs end to end at tiny size (no perplexity)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from tests.any_subset.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "brown-sp4k-tokens.safetensors"


@pytest.mark.skipif(not DATA.is_file(), reason="token file missing: python -m decoding.data.text_corpus --corpus brown")
def test_benchmark_smoke(tmp_path):
    model = tiny_model(tmp_path / "as-arm-tiny", seq_len=24)
    bench = runpy.run_path(str(ROOT / "benchmarks" / "assd_infill.py"))
    out = tmp_path / "r.json"
    bench["main"](["--model", str(model), "--num", "2", "--rates", "0.5", "0.95", "--k", "3", "--no-ppl", "--out", str(out), "--data", str(DATA)])
    report = json.loads(out.read_text())
    for rate in ("0.5", "0.95"):
        rows = report["results"][rate]
        assert rows["sequential"]["nfe_per_token"] == 1.0
        assert rows["assd k=3"]["max_nfe_over_tokens"] <= 1.0
        assert len(rows["assd k=3"]["texts"]) == 2
