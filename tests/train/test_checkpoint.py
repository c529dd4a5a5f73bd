"""The resume checkpoint: exact round trip, shard sizes, atomic commits, damaged files reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decoding.train import checkpoint as ckpt


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model/w": torch.randn(300, 500, generator=g),  # 600 kB
        "model/b": torch.randn(7, generator=g).to(torch.bfloat16),
        "optim/0/step": torch.tensor(12.0),
        "rng/cpu": torch.get_rng_state(),
        "count": torch.tensor(3, dtype=torch.int64),
        "empty": torch.zeros(0, 4),
        **{f"many/{i}": torch.randn(50, 100, generator=g) for i in range(40)},  # 40 x 20 kB
    }


def test_round_trip_is_exact(tmp_path: Path) -> None:
    t = _tensors()
    written = ckpt.write_checkpoint(tmp_path, t, {"step": 12, "history": [[1, 0.5]]})
    back, state = ckpt.read_checkpoint(tmp_path)
    assert state["step"] == 12 and state["history"] == [[1, 0.5]]
    assert set(back) == set(t)
    for k, v in t.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    assert written.files[-1].name == ckpt.STATE_FILE and written.total_bytes == sum(p.stat().st_size for p in written.files)


def test_shards_respect_the_limit_and_big_tensors_are_cut(tmp_path: Path) -> None:
    limit = 200_000
    t = {**_tensors(), "huge": torch.arange(150_000, dtype=torch.float32).reshape(300, 500)}  # 600 kB > limit
    written = ckpt.write_checkpoint(tmp_path, t, {"step": 1}, shard_bytes=limit)
    assert len(written.shard_sizes) >= 7
    assert all(p.stat().st_size <= limit for p in written.files[:-1])
    assert max(written.shard_sizes) > 0.8 * limit  # packed, not one tensor per file
    back, state = ckpt.read_checkpoint(tmp_path)
    assert "huge" in state["split"] and torch.equal(back["huge"], t["huge"]) and torch.equal(back["model/w"], t["model/w"])


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _tensors(0)
    ckpt.write_checkpoint(tmp_path, old, {"step": 10}, shard_bytes=200_000)
    real = ckpt.atomic_write_bytes
    for fail_at in (1, 3, "state"):  # die while writing a new shard, or before the commit
        calls = {"n": 0}

        def dying(path: Path, data: bytes, fail_at=fail_at, calls=calls) -> None:
            calls["n"] += 1
            if (fail_at == "state" and path.name == ckpt.STATE_FILE) or calls["n"] == fail_at:
                (path.parent / f".{path.name}.x1y2.tmp").write_bytes(data[: len(data) // 2])  # what a kill leaves
                raise KeyboardInterrupt
            real(path, data)

        monkeypatch.setattr(ckpt, "atomic_write_bytes", dying)
        with pytest.raises(KeyboardInterrupt):
            ckpt.write_checkpoint(tmp_path, _tensors(1), {"step": 20}, shard_bytes=200_000)
        monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
        back, state = ckpt.read_checkpoint(tmp_path)
        assert state["step"] == 10 and all(torch.equal(back[k], v) for k, v in old.items())
    # the next good write commits and removes the stale shards of the failed attempts
    ckpt.write_checkpoint(tmp_path, _tensors(2), {"step": 30}, shard_bytes=200_000)
    state = ckpt.read_state(tmp_path)
    on_disk = {p.name for p in tmp_path.iterdir()}
    assert on_disk == {s["file"] for s in state["shards"]} | {ckpt.STATE_FILE} and state["step"] == 30


def test_damaged_or_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointNotFoundError, match="no checkpoint"):
        ckpt.read_checkpoint(tmp_path)
    written = ckpt.write_checkpoint(tmp_path, _tensors(), {"step": 1}, shard_bytes=200_000)
    shard = written.files[0]
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(ckpt.CheckpointCorruptError, match="damaged"):
        ckpt.read_checkpoint(tmp_path)
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(ckpt.CheckpointCorruptError, match="sha256"):
        ckpt.read_checkpoint(tmp_path)
    shard.unlink()
    with pytest.raises(ckpt.CheckpointCorruptError, match="missing"):
        ckpt.read_checkpoint(tmp_path)
    (tmp_path / ckpt.STATE_FILE).write_text("{not json")
    with pytest.raises(ckpt.CheckpointCorruptError, match="not valid JSON"):
        ckpt.read_state(tmp_path)
    with pytest.raises(ValueError, match="64 KiB"):
        ckpt.write_checkpoint(tmp_path, {}, {"step": 0}, shard_bytes=1000)
