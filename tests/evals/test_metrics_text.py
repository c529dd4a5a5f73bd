"""Text metrics against hand-computed values and the exact distribution of a Markov chain."""

from __future__ import annotations

import math

import pytest
import torch

from decoding.evals.base import Batch
from decoding.evals.markov import MarkovLM, joint_table, random_chain
from decoding.evals.metrics_text import METRICS, KLExact
from decoding.evals.suite import parse_suite
from decoding.evals.tasks import build

SUITE = """
[[task]]
name = "m"
model = "markov"
decoder = "autoregressive"
samples = 4000
batch = 4000
metrics = ["kl_exact", "validity", "perplexity", "repetition", "distinct_n", "nfe_per_token", "tokens_per_s"]
model_args = { alphabet = "ab$", seed = 1 }
settings = { max_new_tokens = 4 }
data = { grammar_text = 'start: "a"+ "b"*' }
metric_args = { repetition = { n = 2 } }
sweep = { temperature = [0.7] }
"""


def _task(text: str = SUITE):
    (task,) = build(parse_suite(text), torch.device("cpu"))
    return task, task.configs[0].job


def _records(job, batch: Batch, metrics) -> list[dict]:
    scores = [{} for _ in batch.outputs]
    for m in metrics:
        for s, v in zip(scores, m.score(job, batch) or [{}] * len(scores), strict=True):
            s.update(v)
    per = batch.seconds / len(batch.outputs)
    return [
        {"output": o, "nfe": n, "seconds": per, "metrics": s}
        for o, n, s in zip(batch.outputs, batch.nfe, scores, strict=True)
    ]


def test_sequence_distribution_is_exact():
    chain = MarkovLM(random_chain(3, 5), "ab$", eos_token_id=2)
    dist = chain.sequence_distribution(0, 3)
    assert math.isclose(sum(dist.values()), 1.0, rel_tol=1e-12)
    p = chain.transition
    assert math.isclose(dist[(2,)], float(p[0, 2]), rel_tol=1e-12)  # EOS right away
    assert math.isclose(dist[(1, 0, 1)], float(p[0, 1] * p[1, 0] * p[0, 1]), rel_tol=1e-12)  # cut at 3 tokens
    assert (1, 2, 0) not in dist  # nothing follows EOS
    nobos = MarkovLM(chain.transition, "abc")
    table = joint_table(nobos, 0, 3)
    assert all(
        math.isclose(float(table[s]), q, rel_tol=1e-12) for s, q in nobos.sequence_distribution(0, 3).items()
    )


def test_kl_of_exact_sampling_is_at_the_floor_and_a_wrong_target_is_not():
    task, job = _task()
    gen = torch.Generator().manual_seed(0)
    batch = job.run(list(range(4000)), gen)
    records = _records(job, batch, task.metrics)
    kl = next(m for m in task.metrics if isinstance(m, KLExact))
    out = kl.summarize(job, records, None)
    # Fixed seed, so deterministic; an exact sampler sits at the plug-in floor (~0.006 here).
    assert out["kl"] < 2 * out["kl_floor"], out
    assert out["outside_support"] == 0
    assert math.isclose(sum(kl.target(job).values()), 1.0, rel_tol=1e-9)
    # The same samples against the untempered chain (the target a temperature bug would give).
    job.decoder.processors = []
    kl._cache.clear()
    wrong = kl.summarize(job, records, None)
    assert wrong["kl"] > 10 * wrong["kl_floor"], wrong


def test_kl_conditioned_on_a_grammar():
    text = SUITE.replace(
        "metric_args = { repetition = { n = 2 } }",
        'metric_args = { repetition = { n = 2 }, kl_exact = { condition = "grammar" } }',
    )
    task, job = _task(text)
    kl = next(m for m in task.metrics if isinstance(m, KLExact))
    target = kl.target(job)
    texts = {job.lm.markov.text(s) for s in target}
    assert texts and all(t.startswith("a") and "ba" not in t for t in texts)
    assert math.isclose(sum(target.values()), 1.0, rel_tol=1e-9)


def test_per_sample_metrics_by_hand():
    task, job = _task()
    outputs = [
        {"prompt": 0, "tokens": [0, 1, 0, 1, 0], "n_tokens": 5, "text": "ababa"},
        {"prompt": 0, "tokens": [0, 0, 1, 2], "n_tokens": 4, "text": "aab"},
    ]
    batch = Batch(outputs=outputs, nfe=[5.0, 4.0], seconds=2.0, data={"prompt_ids": [[0], [0]]})
    records = _records(job, batch, task.metrics)
    by = {m.name: m for m in task.metrics}
    assert [r["metrics"]["valid"] for r in records] == [0.0, 1.0]
    assert records[0]["metrics"]["rep_2"] == pytest.approx(0.5)  # bigrams ab ba ab ba: 2 of 4 unique
    assert records[1]["metrics"]["rep_2"] == pytest.approx(0.0)
    d = by["distinct_n"].summarize(job, records, None)
    assert d["distinct_1"] == pytest.approx(3 / 9) and d["distinct_2"] == pytest.approx(
        4 / 7
    )  # 01 10 01 10 + 00 01 12
    p = job.lm.markov.transition
    lp = sum(
        math.log(float(p[a, b]))
        for seq in ([0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 2])
        for a, b in zip(seq[:-1], seq[1:], strict=True)
    )
    assert by["perplexity"].summarize(job, records, None)["perplexity"] == pytest.approx(math.exp(-lp / 9))
    assert by["nfe_per_token"].summarize(job, records, None)["nfe_per_token"] == 1.0
    assert by["tokens_per_s"].summarize(job, records, None)["tokens_per_s"] == pytest.approx(4.5)


def test_metric_argument_errors():
    spec = parse_suite(SUITE).tasks[0]
    with pytest.raises(ValueError, match=r"metric repetition: unknown argument\(s\) \['m'\]"):
        METRICS["repetition"]({"m": 3}, spec, None)
    with pytest.raises(ValueError, match="condition must be 'none' or 'grammar'"):
        METRICS["kl_exact"]({"condition": "x"}, spec, None)
    nogrammar = parse_suite(SUITE.replace('data = { grammar_text = \'start: "a"+ "b"*\' }\n', "")).tasks[0]
    with pytest.raises(ValueError, match="metric validity needs a grammar"):
        METRICS["validity"]({}, nogrammar, None)


def test_kl_exact_refuses_models_without_a_known_distribution():
    text = SUITE.replace('model = "markov"', 'model = "tiny-transformer"').replace(
        'model_args = { alphabet = "ab$", seed = 1 }', ""
    )
    text = text.replace('"kl_exact", "validity", ', "").replace("metrics = [", 'metrics = ["kl_exact", ')
    with pytest.raises(ValueError, match="kl_exact needs a model with a known distribution"):
        _task(text)
