"""``count_syncs`` charges each synchronisation to the package's innermost frame (checked on CPU by
simulating torch's sync-debug warnings; the real count runs in ``tests/text/test_gpu.py``)."""

from __future__ import annotations

import warnings

import pytest
import torch

from decoding.core import syncs


def _sync_here() -> None:
    warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=2)


def test_syncs_are_charged_to_the_calling_package_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text("def work(sync):\n    sync()\n    sync()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from pkg import mod  # type: ignore[import-not-found]

    def run() -> None:
        _sync_here()  # the caller's own sync (a test's .cuda()): not inside pkg
        mod.work(_sync_here)
        warnings.warn("an unrelated warning", stacklevel=1)

    assert syncs.count_syncs(run, within=pkg) == {"pkg/mod.py:2": 1, "pkg/mod.py:3": 1}
    everything = syncs.count_syncs(run)
    assert sum(everything.values()) == 3 and all(k.startswith("test_syncs.py:") for k in everything)
    assert len(syncs.sync_stacks(run)) == 3


def test_the_switch_to_debug_mode_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an H100 (2026-12-07) the first ``set_sync_debug_mode("warn")`` of a process warned of a
    synchronisation itself, which was charged to ``decoding/core/syncs.py``: only ``fn()`` counts."""

    def switch(mode) -> None:
        if mode == "warn":
            _sync_here()

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", switch)
    assert syncs.count_syncs(lambda: None, within=syncs.PACKAGE) == {}
    warn_line = _sync_here.__code__.co_firstlineno + 1  # the one of fn() is still counted, at its warn
    assert syncs.count_syncs(_sync_here) == {f"test_syncs.py:{warn_line}": 1}
