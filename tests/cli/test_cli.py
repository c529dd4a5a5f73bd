"""The command line: help on every subcommand, one-line errors with status 2, and the demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from decoding.cli.main import SUBCOMMANDS, main


def test_help_on_every_subcommand(capsys):
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: decoding" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line():
    cases = [
        ["demo", "--no-such-option"],
        ["demo", "--device", "cuda:7", "--skip", "text", "json", "radd", "assd", "image"],
        ["image", "--model", "fashion-large", "--class", "99", "--n", "1"],
        ["text", "--model", "smollm2", "--prompt", "hi", "--typical", "1.5"],
        ["generate", "fashion-small", "--temperature", "0.5"],
        ["generate", "radd-brown", "The ____ sat", "--max-new-tokens", "4"],
        ["generate", "as-arm-brown", "The ____ sat", "--grammar", "json"],
        ["generate", "smollm2", "hi", "--steps", "4"],
        ["generate", "smollm2", "hi", "--class", "3"],
        ["generate", "no-such-model", "hi"],
        ["eval", "/no/such/suite.toml", "--out", "/tmp/x"],
    ]
    for argv in cases:
        p = subprocess.run([sys.executable, "-m", "decoding", *argv], capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, (argv, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) <= 2, p.stderr  # argparse: usage line + message
        if argv[0] == "generate":  # an option of another kind names the option and the model's kind
            assert "does not apply to" in p.stderr or "no model" in p.stderr, p.stderr


@pytest.mark.parametrize(("device", "says"), [("meta", "not on 'meta'"), ("bogus", "not a device name"),
                                             ("cuda", "CUDA is not available")])
def test_a_device_the_engine_cannot_use_is_refused_before_loading(device, says, capsys):
    """``--device meta`` ran into a traceback deep in sampling; every device but the CPU and CUDA is refused up front
    (CUDA where the machine has it: this test runs where it does not)."""
    import torch

    from decoding.api import OptionError, load, resolve_device

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["generate", "fashion-small", "--n", "1", "--steps", "2", "--device", device]) == 2
    err = capsys.readouterr().err
    assert f"--device {device}:" in err and says in err, err
    with pytest.raises(OptionError, match=says):
        load("fashion-small", device=device)
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"


def test_demo_quick_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "decoding", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    for f in ["text.jsonl", "json.jsonl", "radd.json", "assd.json", "fashion.png", "fashion.json", "summary.md"]:
        assert (out / f).is_file(), f
    for line in (out / "json.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["finish_reason"] == "eos", row  # the budget guard closes every sample in time
        json.loads(row["text"])
    radd = json.loads((out / "radd.json").read_text())
    assert radd["cached"]["text"] == radd["uncached"]["text"]
