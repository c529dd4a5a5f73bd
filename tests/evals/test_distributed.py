"""torchrun: 1 and 2 gloo processes on the CPU give identical results.jsonl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from decoding.evals.distributed import World
from decoding.evals.runner import TIME_KEYS

ROOT = Path(__file__).resolve().parents[2]
SUITE = """
name = "dist"
seed = 11
[[task]]
name = "ar"
model = "tiny-transformer"
decoder = "autoregressive"
samples = 10
batch = 2
prompts = ["Hi", "The cat"]
metrics = ["perplexity", "distinct_n"]
model_args = { dim = 32, layers = 1, heads = 2 }
settings = { max_new_tokens = 6, top_k = 20 }
[[task]]
name = "aligned"
model = "markov"
decoder = "aligned"
samples = 9
batch = 3
metrics = ["validity"]
model_args = { alphabet = "ab$", seed = 1 }
settings = { max_new_tokens = 4 }
data = { grammar_text = 'start: "a"+ "b"*' }
[[task]]
name = "radd"
model = "markov"
decoder = "radd"
samples = 12
batch = 4
metrics = ["kl_exact"]
model_args = { alphabet = "abc", eos = "" }
settings = { max_new_tokens = 3, steps = 3, cache = true }
"""


def _run(cmd: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = cmd + ["--out", str(out), "--no-progress", "--no-report"]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the workers it started
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return [
        {k: v for k, v in json.loads(x).items() if k not in TIME_KEYS}
        for x in (out / "results.jsonl").read_text().splitlines()
    ]


def test_one_and_two_processes_give_identical_results(tmp_path):
    suite = tmp_path / "dist.toml"
    suite.write_text(SUITE)
    single = _run([sys.executable, "-m", "decoding", "eval", str(suite)], tmp_path / "one")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    double = _run(launcher + ["-m", "decoding", "eval", str(suite)], tmp_path / "two")
    assert len(single) == 10 + 9 + 12
    assert single == double


def test_rounds_keep_sequential_groups_on_one_rank():
    world = World(rank=0, size=2)
    items = [("a", 0), ("a", 1), ("s", 0), ("s", 1), ("s", 2), ("a", 2)]
    rounds = world.rounds(items, lambda it: it[0] if it[0] == "s" else None)
    per_rank = [[r[k] for r in rounds if r[k] is not None] for k in range(2)]
    assert sorted(per_rank[0] + per_rank[1]) == sorted(items)
    seq = [q for q in per_rank if ("s", 0) in q][0]
    assert [it for it in seq if it[0] == "s"] == [("s", 0), ("s", 1), ("s", 2)]
    assert max(len(q) for q in per_rank) == 3  # balanced: 3 + 3
