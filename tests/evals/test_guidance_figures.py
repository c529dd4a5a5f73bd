"""The guidance evaluation's figures: row families, the class-ordered sample grid, plots only for scored rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decoding.evals.guidance_figures import family, plots, sample_grid


def test_family_of_row_names() -> None:
    assert [family(n) for n in ("none", "cfg-1.5", "cfg-3-rescale-0.7", "cfgpp-0.6", "pag-2", "cfg-1.5-pag-1",
                                "agd-2", "stitch-0.4")] == ["none", "cfg", "cfg", "cfgpp", "pag", "cfg+pag", "agd", "stitch"]


def test_sample_grid_puts_each_class_on_its_row() -> None:
    labels = np.array([2, 0, 1, 0, 2, 2])
    images = (labels[:, None, None, None] * 100 + np.zeros((6, 1, 4, 4))).astype(np.uint8)  # tile value = 100 * class
    grid = np.asarray(sample_grid(images, labels, per_class=3, scale=1))
    assert grid.shape == (3 * 6 + 2, 3 * 6 + 2)  # 3 classes x 3 tiles of 4 px, 2 px padding
    tile = lambda r, c: grid[2 + r * 6: 6 + r * 6, 2 + c * 6: 6 + c * 6]  # noqa: E731
    assert (tile(0, 0) == 0).all() and (tile(1, 0) == 100).all() and (tile(2, 2) == 200).all()
    assert (tile(1, 1) == 0).all() and (tile(0, 1) == 0).all()  # class 1 has one sample: the rest of its row is black
    with pytest.raises(ValueError, match="uint8"):
        sample_grid(images.astype(np.float32), labels)


def test_plots_skip_unscored_rows(tmp_path: Path) -> None:
    rows = [{"config": "cfg-2", "label": "CFG 2", "nfe_budget": 10, "images_per_second": 5.0, "fid": None,
             "class_accuracy": None}]
    assert plots(tmp_path, rows) == []
    rows += [{"config": "agd-2", "label": "AGD 2", "nfe_budget": b, "images_per_second": 9.0, "fid": 7.5,
              "class_accuracy": 0.98} for b in (10, 20)]
    written = plots(tmp_path, rows)
    assert [p.name for p in written] == ["fid_vs_speed.png", "fid_vs_accuracy.png"]
    assert Image.open(written[0]).size[0] > Image.open(written[0]).size[1]  # two panels side by side
