"""Bad inputs to the restoration flags of ``decoding generate`` (``--inpaint/--mask``, ``--super-resolution/--factor``,
``--deblur/--blur-sigma``, ``--truth``): exit status 2, one line naming the option, nothing sampled, no file written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import decoding
from decoding.cli.main import main
from decoding.control.images import read_image, read_mask, write_image
from tests.control.fixtures import tiny_model_folder


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder ``fashion-tiny`` (28x28) and image files: good, wrong size, 7x7, not an image, a folder."""
    d = tmp_path_factory.mktemp("inputs")
    tiny_model_folder(d / "zoo" / "fashion-tiny")
    g = torch.Generator().manual_seed(0)
    write_image(d / "obs.png", torch.rand(1, 1, 28, 28, generator=g) * 2 - 1)
    write_image(d / "mask.png", torch.ones(1, 1, 28, 28))
    write_image(d / "big.png", torch.rand(1, 1, 32, 32, generator=g) * 2 - 1)
    write_image(d / "low7.png", torch.rand(1, 1, 7, 7, generator=g) * 2 - 1)
    (d / "notes.png").write_text("not an image\n")
    good = (d / "obs.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    (d / "folder.png").mkdir()
    return d


@pytest.fixture
def cli(zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):  # noqa: ANN001, ANN201
    """``run(*flags) -> (rc, stderr)`` with ``--out`` in an empty folder; sampling is an error (checks come first)."""
    monkeypatch.setenv("DECODING_MODELS", str(zoo / "zoo"))
    monkeypatch.chdir(zoo)

    def no_sampling(*a: object, **k: object) -> None:
        raise AssertionError("sampling ran although the input was bad")

    monkeypatch.setattr(decoding, "generate", no_sampling)
    out = tmp_path / "out"
    out.mkdir()

    def run(*flags: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = main(["generate", "fashion-tiny", *flags, "--steps", "2", "--n", "1", "--out", str(out / "grid.png")])
        err = capsys.readouterr().err
        assert list(out.iterdir()) == [], "an output file was written for bad input"
        return rc, err

    return run


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decoding generate: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("truth", ["big.png", "missing.png", "notes.png", "folder.png"])
def test_bad_truth_fails_before_sampling_and_writes_nothing(cli, truth: str) -> None:  # noqa: ANN001
    rc, err = cli("--deblur", "obs.png", "--truth", truth)
    line = one_line(err)
    assert rc == 2 and "--truth" in line and truth in line
    if truth == "big.png":
        assert "32x32" in line and "28x28" in line


@pytest.mark.parametrize("factor", ["0", "-4", "3", "1", "56"])
def test_bad_factor_is_a_clear_error(cli, factor: str) -> None:  # noqa: ANN001
    rc, err = cli("--super-resolution", "low7.png", "--factor", factor)
    line = one_line(err)
    assert rc == 2 and f"--factor {factor}" in line and "2, 4, 7, 14, 28" in line and "-7x-7" not in line


def test_low_resolution_image_of_the_wrong_size_names_the_factor(cli) -> None:  # noqa: ANN001
    rc, err = cli("--super-resolution", "obs.png", "--factor", "2")
    line = one_line(err)
    assert rc == 2 and "--super-resolution" in line and "28x28" in line and "14x14" in line and "--factor" in line


@pytest.mark.parametrize("flags", [
    ("--inpaint", "notes.png", "--mask", "mask.png"),
    ("--inpaint", "obs.png", "--mask", "notes.png"),
    ("--inpaint", "obs.png", "--mask", "folder.png"),
    ("--deblur", "notes.png"),
    ("--deblur", "truncated.png"),
    ("--deblur", "folder.png"),
    ("--deblur", "missing.png"),
    ("--super-resolution", "notes.png"),
])
def test_unreadable_observation_names_its_option(cli, flags: tuple[str, ...]) -> None:  # noqa: ANN001
    bad = next(i for i, f in enumerate(flags) if f in ("notes.png", "truncated.png", "folder.png", "missing.png"))
    rc, err = cli(*flags)
    line = one_line(err)
    assert rc == 2 and f"{flags[bad - 1]}: " in line and flags[bad] in line


@pytest.mark.parametrize("flags", [("--blur-sigma", "inf"), ("--blur-sigma", "0"), ("--blur-sigma", "nan"),
                                   ("--steer-scale", "inf"), ("--steer-scale", "-1")])
def test_bad_numbers_fail_before_sampling(cli, flags: tuple[str, str]) -> None:  # noqa: ANN001
    rc, err = cli("--deblur", "obs.png", *flags)
    assert rc == 2 and flags[0] in one_line(err)


def test_read_image_turns_bad_files_into_value_errors(zoo: Path) -> None:
    for name in ("notes.png", "truncated.png", "folder.png"):
        with pytest.raises(ValueError, match=name):
            read_image(zoo / name)
        with pytest.raises(ValueError, match=name):
            read_mask(zoo / name)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(zoo / "missing.png")
    with pytest.raises(ValueError, match="32x32 pixels; this needs 28x28"):
        read_image(zoo / "big.png", 28)
    assert read_image(zoo / "low7.png", 7).shape == (1, 1, 7, 7)


def test_deblur_with_truth_still_writes_grid_and_report(zoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys) -> None:  # noqa: ANN001
    monkeypatch.setenv("DECODING_MODELS", str(zoo / "zoo"))
    out = tmp_path / "sharp.png"
    argv = ["generate", "fashion-tiny", "--deblur", str(zoo / "obs.png"), "--truth", str(zoo / "obs.png"),
            "--n", "2", "--steps", "2", "--out", str(out)]
    assert main(argv) == 0
    assert "observation | result | truth" in capsys.readouterr().out
    with Image.open(tmp_path / "sharp_report.png") as im:
        assert im.size == (4 * (3 * 30 + 2), 4 * (2 * 30 + 2))  # observation | result | truth, 2 rows
    assert out.is_file()
