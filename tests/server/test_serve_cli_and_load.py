"""The ``decoding serve`` command line and the load benchmark at toy size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from decoding.cli.main import build_parser, main

pytestmark = pytest.mark.one_thread
ROOT = Path(__file__).resolve().parents[2]


def test_serve_is_a_subcommand_with_safe_defaults(capsys) -> None:
    args = build_parser().parse_args(["serve", "smollm2"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.bucket == "auto" and args.chunk_steps is None
    assert main(["serve", "smollm2", "--max-n", "9", "--max-batch-rows", "8"]) == 2
    assert "--max-n (9) must not exceed --max-batch-rows (8)" in capsys.readouterr().err


def test_serve_refuses_kinds_it_does_not_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import decoding as dc
    from decoding.server import ServerConfig, create_app
    from tests.api.fixtures import tiny_radd

    tiny_radd(tmp_path / "zoo" / "radd-tiny")
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path / "zoo"))
    with pytest.raises(ValueError, match="masked-diffusion model"):
        create_app(dc.load("radd-tiny", device="cpu"), ServerConfig(served_name="radd-tiny"))


def test_load_benchmark_at_toy_size(tiny_llama_dir, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--model", str(tiny_llama_dir), "--clients", "3", "--requests", "2", "--max-tokens", "40",
                         "--decode-baseline", "--json", str(tmp_path / "r.json")])
    for run in ("cold", "warm", "sequential"):
        assert report[run]["answered"] == 6 and report[run]["constrained"] == 3
        assert report[run]["invalid_constrained"] == 0 and report[run]["tokens"] > 0
    assert report["same_answers_concurrent_vs_sequential"] and report["same_answers_cold_vs_warm"]
    assert report["decode"]["tokens"] == report["warm"]["tokens"]  # the same requests, the same tokens
    assert report["max_batch_rows_seen"] >= 2 and (tmp_path / "r.json").is_file()
