"""docs/build_performance.py: links of docs/perf pages keep pointing at their targets from docs/PERFORMANCE.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("build_performance", ROOT / "docs" / "build_performance.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_relative_links_are_rebased_to_docs() -> None:
    rebase = _module().rebase_links
    text = "[a](solvers_fid.md) ![p](../../evals/results/g/f.png) [u](https://x.y/z) [h](#top) [s](solvers.md#sec)"
    assert rebase(text) == ("[a](perf/solvers_fid.md) ![p](../evals/results/g/f.png) [u](https://x.y/z) [h](#top) "
                            "[s](perf/solvers.md#sec)")


def test_every_rebased_file_link_of_the_committed_pages_exists() -> None:
    rebase = _module().rebase_links
    for page in sorted((ROOT / "docs" / "perf").glob("*.md")):
        for target in _module().LINK.findall(rebase(page.read_text())):
            path = target[1].split("#")[0]
            if "://" in path or not path:
                continue
            assert (ROOT / "docs" / path).exists(), f"{page.name}: {path}"
