"""The AGD adapter card of the shipped folder: what it says about the run, and no machine paths."""

from __future__ import annotations

import json
from pathlib import Path

from decoding.models.adapter_card import render_adapter_card

FOLDER = Path(__file__).resolve().parents[2] / "models" / "fashion-large-agd"


def test_shipped_card_is_current_and_portable():
    text = render_adapter_card(FOLDER)
    assert text == (FOLDER / "README.md").read_text()  # the committed card is the rendered one
    assert "reads `models/fashion-large-agd`" in text and str(FOLDER.parent) not in text
    log = json.loads((FOLDER / "train_log.json").read_text())
    assert f"{log['steps']} of {log['planned_steps']} planned steps" in text
    assert ("(NOT finished)" in text) == (not log["finished"])


def test_the_shipped_card_shows_the_measured_agd_rows():
    """The card's sample-quality table comes from the folder's eval_guidance.json (AGD rows only)."""
    rows = json.loads((FOLDER / "eval_guidance.json").read_text())["results"]
    assert rows and all(r["label"].startswith("AGD") for r in rows)
    text = (FOLDER / "README.md").read_text()
    for r in rows:
        assert f"| {r['label']} | {r['nfe']:g} | {r['fid']:.2f} | {r['class_accuracy']:.3f} |" in text
