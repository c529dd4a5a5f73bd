"""Text decoders wired into the evals: RADD's cache, ASSD and grammar-aligned decoding on exact targets."""

from __future__ import annotations

import torch

from decoding.evals.suite import parse_suite
from decoding.evals.tasks import build

MARKOV = 'model = "markov"\nmodel_args = { alphabet = "abc", eos = "", seed = 2, concentration = 0.5 }\n'


def _jobs(body: str):
    (task,) = build(parse_suite("[[task]]\nname = 't'\n" + body), torch.device("cpu"))
    return task, [c.job for c in task.configs]


def _kl(task, job, n: int, seed: int = 0) -> dict:
    batch = job.run(list(range(n)), torch.Generator().manual_seed(seed))
    records = [
        {"output": o, "nfe": x, "seconds": 0.0, "metrics": {}}
        for o, x in zip(batch.outputs, batch.nfe, strict=True)
    ]
    return task.metrics[0].summarize(job, records, None) | {
        "nfe": sum(batch.nfe) / n,
        "tokens": [o["tokens"] for o in batch.outputs],
    }


def test_radd_cache_gives_the_same_samples_with_fewer_calls():
    task, (plain, cached) = _jobs(
        MARKOV
        + 'decoder = "radd"\nsamples = 1\nmetrics = ["kl_exact"]\nsettings = { max_new_tokens = 3, steps = 12 }\nsweep = { cache = [false, true] }\n'
    )
    a, b = _kl(task, plain, 400), _kl(task, cached, 400)
    assert a["tokens"] == b["tokens"]
    assert b["nfe"] <= 4 < a["nfe"]  # <= L + 1 calls per row with the cache; ~steps without
    assert a["kl"] < 3 * a["kl_floor"]  # 12 tweedie steps over 3 positions: close to exact


def test_assd_is_exact_and_commits_several_tokens_per_call():
    task, (job,) = _jobs(
        MARKOV
        + 'decoder = "assd"\nsamples = 1\nmetrics = ["kl_exact"]\nsettings = { max_new_tokens = 3, k = 3 }\n'
    )
    out = _kl(task, job, 3000)
    assert out["kl"] < 2 * out["kl_floor"], out
    assert out["nfe"] < 3


def test_aligned_decoding_beats_constrained_decoding_on_the_conditional():
    body = (
        'model = "markov"\nmodel_args = { alphabet = "ab$", seed = 1 }\nsamples = 1\nmetrics = ["kl_exact"]\n'
        'data = { grammar_text = \'start: "a"+ "b"*\' }\nmetric_args = { kl_exact = { condition = "grammar" } }\n'
        "settings = { max_new_tokens = 4 }\n"
    )
    task, (constrained,) = _jobs(body + 'decoder = "autoregressive"\nsweep = { constrain = [true] }\n')
    task2, (aligned,) = _jobs(body + 'decoder = "aligned"\n')
    c = _kl(task, constrained, 300)
    aligned.set_state(None)
    a = _kl(task2, aligned, 300)
    assert a["outside_support"] == 0  # every aligned sample parses
    assert a["kl"] < 2 * a["kl_floor"] < c["kl"], (a["kl"], a["kl_floor"], c["kl"])
