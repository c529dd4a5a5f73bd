"""The text examples run (with few tokens) so they never rot."""

from __future__ import annotations

import pytest

from tests.examples.runner import load_script


def run_example(name: str, argv: list[str]) -> None:
    load_script(f"examples/{name}.py").main(argv)


@pytest.fixture(scope="module", autouse=True)
def smollm2_available():
    from decoding.adapters.smollm2 import smollm2_dir

    try:
        smollm2_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize(
    "name, argv, expect",
    [
        ("text_generate", ["--max-new-tokens", "4"], "--- prompt 1: "),
        ("text_processors", ["--max-new-tokens", "3"], "[typical 0.2]"),
        ("text_hf_model", ["--max-new-tokens", "3"], "on the hf engine"),
    ],
)
def test_text_example(name: str, argv: list[str], expect: str, capsys) -> None:
    run_example(name, argv)
    assert expect in capsys.readouterr().out
