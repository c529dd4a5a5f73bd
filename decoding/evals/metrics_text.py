"""Text metrics: grammar validity, KL to an exact distribution, perplexity, repetition, distinct-n, cost.

Every metric is built as ``Metric(args, task, suite_dir)``; ``check`` refuses a job it cannot
score before any sample is drawn. Per-sample values land in ``results.jsonl``; ``summarize``
gives one number (or a plotted distribution) per config.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from decoding.evals.base import Artifacts, Batch, Job, mean, take_args
from decoding.evals.grammar_check import grammar_from
from decoding.evals.suite import TaskSpec


def _need_text(name: str, job: Job) -> None:
    if job.kind != "text":
        raise ValueError(f"metric {name} scores text; task kind is {job.kind!r}")


class TextMetric:
    """Defaults for text metrics: no per-sample values, text jobs only."""

    name = "text-metric"
    primary: tuple[str, ...] = ()

    def check(self, job: Job) -> None:
        _need_text(self.name, job)

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        return []

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        return {}


class Validity(TextMetric):
    """Fraction of samples whose text parses under the task's lark grammar."""

    name = "validity"
    primary = ("validity",)

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        take_args(f"metric {self.name}", args, {"grammar": None, "grammar_text": None, "start": None})
        self.checker = grammar_from(args, task.data, suite_dir, "metric validity")

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        return [{"valid": float(self.checker(o["text"]))} for o in batch.outputs]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        return {"validity": mean([r["metrics"]["valid"] for r in records])}


class KLExact(TextMetric):
    """KL(observed || target) and total variation between the samples and an exact distribution.

    The target is the Markov model's sequence distribution with the decoder's (state-free)
    processors applied to every row; with ``condition = "grammar"`` it is further conditioned
    on the text parsing under the task's grammar (the target of grammar-aligned decoding,
    Park et al., arXiv 2405.21047). ``kl_floor`` is the mean KL an exact sampler reaches with
    the same number of samples (20 multinomial draws at a fixed seed): a decoder is exact when
    its KL is near the floor.
    """

    name = "kl_exact"
    primary = ("kl",)

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        a = take_args(f"metric {self.name}", args, {"condition": "none", "top": 16, "limit": 1_000_000})
        if a["condition"] not in ("none", "grammar"):
            raise ValueError(
                f"metric kl_exact: condition must be 'none' or 'grammar', got {a['condition']!r}"
            )
        self.args = a
        self.checker = (
            grammar_from({}, task.data, suite_dir, "metric kl_exact (condition = 'grammar')")
            if a["condition"] == "grammar"
            else None
        )
        self._cache: dict[int, dict[tuple[int, ...], float]] = {}

    def check(self, job: Job) -> None:
        _need_text(self.name, job)
        lm, dec = getattr(job, "lm", None), getattr(job, "decoder", None)
        if lm is None or lm.markov is None:
            raise ValueError("metric kl_exact needs a model with a known distribution: use model = 'markov'")
        if dec is None or dec.processors is None:
            raise ValueError(
                f"metric kl_exact: decoder {dec.name if dec else '?'} with these settings has no exact target (greedy or sequence-dependent processors)"
            )
        if len({tuple(p) for p in job.prompt_ids}) != 1 or len(job.prompt_ids[0]) != 1:
            raise ValueError(
                "metric kl_exact needs one prompt of one token (the Markov start token); leave prompts empty"
            )
        self.target(job)  # enumerate now: too large a support fails before sampling

    def target(self, job: Any) -> dict[tuple[int, ...], float]:
        key = id(job)
        if key not in self._cache:
            procs = job.decoder.processors

            def rows(logp: torch.Tensor) -> torch.Tensor:
                out = logp.float()
                for p in procs:
                    out = p(out, None)
                return out.double()

            chain = job.lm.markov
            dist = chain.sequence_distribution(
                job.prompt_ids[0][-1], job.decoder.max_new_tokens, rows, int(self.args["limit"])
            )
            if self.checker is not None:
                dist = {s: p for s, p in dist.items() if self.checker(chain.text(s))}
                z = sum(dist.values())
                if z <= 0:
                    raise ValueError(
                        "metric kl_exact: no sequence within max_new_tokens parses under the grammar"
                    )
                dist = {s: p / z for s, p in dist.items()}
            self._cache[key] = dist
        return self._cache[key]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        target = self.target(job)
        counts = Counter(tuple(r["output"]["tokens"]) for r in records)
        n = sum(counts.values())
        kl = 0.0
        for s, c in counts.items():
            q = c / n
            p = target.get(s, 0.0)
            kl += math.inf if p == 0 else q * math.log(q / p)
        keys = list(target)
        tv = 0.5 * (
            sum(abs(counts.get(s, 0) / n - target[s]) for s in keys)
            + sum(c / n for s, c in counts.items() if s not in target)
        )
        probs = torch.tensor([target[s] for s in keys], dtype=torch.float64)
        g = torch.Generator().manual_seed(0)
        floors = []
        for _ in range(20):
            draw = (
                torch.multinomial(probs, n, replacement=True, generator=g)
                .bincount(minlength=len(keys))
                .double()
                / n
            )
            nz = draw > 0
            floors.append(float((draw[nz] * (draw[nz] / probs[nz]).log()).sum()))
        top = sorted(keys, key=lambda s: -target[s])[: int(self.args["top"])]
        alphabet = job.lm.markov.alphabet
        return {
            "kl": kl,
            "kl_floor": mean(floors),
            "tv": tv,
            "outside_support": sum(c for s, c in counts.items() if s not in target) / n,
            "distribution": {
                "labels": ["".join(alphabet[t] for t in s) or "(empty)" for s in top],
                "target": [target[s] for s in top],
                "observed": [counts.get(s, 0) / n for s in top],
            },
        }


class Perplexity(TextMetric):
    """Generation perplexity ``exp(-sum log p / sum tokens)`` of the samples under a reference LM.

    ``ref = "self"``: the task's own model without processors (token level). ``ref =
    "smollm2"``: SmolLM2-135M-Instruct through transformers (text re-tokenized).
    """

    name = "perplexity"
    primary = ("perplexity",)

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        a = take_args(f"metric {self.name}", args, {"ref": "self"})
        if a["ref"] not in ("self", "smollm2"):
            raise ValueError(f"metric perplexity: ref must be 'self' or 'smollm2', got {a['ref']!r}")
        self.ref = a["ref"]
        self._hf: Any = None

    def check(self, job: Job) -> None:
        _need_text(self.name, job)
        if self.ref == "self" and job.lm.token_logprobs is None:
            raise ValueError(
                f"metric perplexity: model {job.lm.name} cannot score its own tokens; use ref = 'smollm2'"
            )
        if self.ref == "smollm2":
            self._load(job.device)

    def _load(self, device: torch.device) -> Any:
        if self._hf is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from decoding.adapters.smollm2 import smollm2_dir

            path = smollm2_dir()
            self._hf = (
                AutoTokenizer.from_pretrained(path),
                AutoModelForCausalLM.from_pretrained(path).to(device).eval(),
            )
        return self._hf

    def _smollm2(self, job: Job, batch: Batch) -> list[list[float]]:
        tok, model = self._load(job.device)
        out = []
        with torch.inference_mode():
            for o in batch.outputs:
                prefix = tok(job.prompts[o["prompt"]] or tok.bos_token or "").input_ids or [tok.eos_token_id]
                cont = tok(o["text"], add_special_tokens=False).input_ids
                if not cont:
                    out.append([])
                    continue
                ids = torch.tensor([prefix + cont], device=job.device)
                lp = torch.log_softmax(model(ids).logits[0, len(prefix) - 1 : -1].float(), -1)
                out.append(lp.gather(-1, ids[0, len(prefix) :, None])[:, 0].tolist())
        return out

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        if self.ref == "self":
            lps = job.lm.token_logprobs(batch.data["prompt_ids"], [o["tokens"] for o in batch.outputs])
        else:
            lps = self._smollm2(job, batch)
        return [{"logprob": float(sum(lp)), "ppl_tokens": float(len(lp))} for lp in lps]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        lp = sum(r["metrics"]["logprob"] for r in records)
        n = sum(r["metrics"]["ppl_tokens"] for r in records)
        return {"perplexity": math.exp(-lp / n) if n else float("nan")}


def ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class Repetition(TextMetric):
    """seq-rep-n (Welleck et al., arXiv 1908.04319): ``1 - unique n-grams / n-grams`` of each sample."""

    name = "repetition"

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        self.n = int(take_args(f"metric {self.name}", args, {"n": 4})["n"])
        if self.n < 1:
            raise ValueError(f"metric repetition: n must be >= 1, got {self.n}")
        self.primary = (f"rep_{self.n}",)

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        out = []
        for o in batch.outputs:
            g = ngrams(o["tokens"], self.n)
            out.append({f"rep_{self.n}": 1.0 - len(set(g)) / len(g)} if g else {})
        return out

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        key = f"rep_{self.n}"
        return {key: mean([r["metrics"][key] for r in records if key in r["metrics"]])}


class DistinctN(TextMetric):
    """distinct-n (Li et al., arXiv 1510.03055): unique n-grams / all n-grams over every sample of a config."""

    name = "distinct_n"

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        ns = take_args(f"metric {self.name}", args, {"n": [1, 2]})["n"]
        self.ns = [int(x) for x in (ns if isinstance(ns, list) else [ns])]
        self.primary = (f"distinct_{max(self.ns)}",)

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        out = {}
        for n in self.ns:
            grams = [g for r in records for g in ngrams(r["output"]["tokens"], n)]
            out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else float("nan")
        return out


class NFEPerToken(TextMetric):
    """Model evaluations per generated token (1 for plain autoregressive decoding)."""

    name = "nfe_per_token"

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        take_args(f"metric {self.name}", args, {})

    def score(self, job: Job, batch: Batch) -> list[dict[str, float]]:
        return [
            {"nfe_per_token": n / o["n_tokens"]} if o["n_tokens"] else {}
            for n, o in zip(batch.nfe, batch.outputs, strict=True)
        ]

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        tokens = sum(r["output"]["n_tokens"] for r in records)
        return {"nfe_per_token": sum(r["nfe"] for r in records) / tokens if tokens else float("nan")}


class TokensPerSecond(TextMetric):
    """Generated tokens per second of decoding wall time (over all samples of a config)."""

    name = "tokens_per_s"

    def __init__(self, args: dict[str, Any], task: TaskSpec, suite_dir: Path | None) -> None:
        take_args(f"metric {self.name}", args, {})

    def summarize(self, job: Job, records: list[dict[str, Any]], artifacts: Artifacts) -> dict[str, Any]:
        secs = sum(r["seconds"] for r in records)
        return {
            "tokens_per_s": sum(r["output"]["n_tokens"] for r in records) / secs if secs else float("nan")
        }


METRICS = {
    m.name: m for m in (Validity, KLExact, Perplexity, Repetition, DistinctN, NFEPerToken, TokensPerSecond)
}
