"""The JSON Schema benchmark runs end to end on toy data laid out like the real suites (ours only)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def _load(monkeypatch):
    """The script as a module (registered, so that its dataclasses resolve their annotations)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "json_schema_suite.py"
    spec = importlib.util.spec_from_file_location("json_schema_suite_bench", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_json_schema_suite_benchmark_toy(tmp_path, monkeypatch) -> None:
    suite = tmp_path / "JSON-Schema-Test-Suite" / "tests" / "draft7"
    suite.mkdir(parents=True)
    groups = [
        {"schema": {"type": "integer", "maximum": 3}, "tests": [
            {"data": 2, "valid": True}, {"data": 5, "valid": False}, {"data": "x", "valid": False}]},
        {"schema": {"type": "array", "uniqueItems": True}, "tests": [  # narrowed: at most one item
            {"data": [1], "valid": True}, {"data": [1, 2], "valid": True}, {"data": [1, 1], "valid": False}]},
        {"schema": False, "tests": [{"data": 1, "valid": False}]},  # no grammar: not compiled
    ]  # fmt: skip
    (suite / "toy.json").write_text(json.dumps(groups))
    jsb = tmp_path / "jsonschemabench" / "maskbench" / "data"
    jsb.mkdir(parents=True)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 4}}, "required": ["name"]}
    tests = [{"data": {"name": "Ann"}, "valid": True}, {"data": {"name": "Annabel"}, "valid": False}]
    (jsb / "Github_trivial---t1.json").write_text(json.dumps({"schema": schema, "tests": tests}))
    bench = _load(monkeypatch)
    out = tmp_path / "r.json"
    args = ["--data", str(tmp_path), "--subsets", "draft7,Github_trivial", "--engines", "ours", "--clock", "cpu"]
    res = bench.main([*args, "--out", str(out)])
    assert json.loads(out.read_text())["results"].keys() == res.keys()
    ts, gh = res["test-suite draft7"]["ours"], res["JSONSchemaBench Github_trivial"]["ours"]
    assert (ts["schemas"], ts["compiled"], ts["narrowed"]) == (3, 2, 1)
    assert (ts["valid"], ts["invalid"], ts["false_accepts"], ts["false_rejects"]) == (3, 3, 0, 1)
    assert (gh["schemas"], gh["compiled"], gh["false_accepts"], gh["false_rejects"]) == (1, 1, 0, 0)
    phases = gh["cases"][0]["phases_ms"]  # where the compile time went, step by step
    assert set(phases) == set(bench.PHASES) and all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= 1e3 * gh["cases"][0]["compile_s"]
    assert "Github_trivial | t1 |" in bench.phase_table(res)
