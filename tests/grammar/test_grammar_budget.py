"""Shortest completions and the budget guard: completions are valid and minimal, rows finish in time."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from decoding import decode
from decoding.grammar import compile_grammar
from decoding.grammar.budget import BudgetGuard
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from examples.grammar_json import RandomLM
from tests.grammar.grammar_fixtures import GRAMMARS, get_compiled
from tests.grammar.grammar_samples import ACCEPT
from tests.grammar.test_grammar_matcher import _byte_vocab


def _byte_classes(g) -> list[int]:
    """One byte per class of bytes that every lexer DFA of ``g`` treats alike (for exact searches)."""
    dfas = [g.dfa(c) for c in range(len(g._ctx_terms))]
    seen: dict[bytes, int] = {}
    for b in range(256):
        sig = b"".join(d.delta[:, b].tobytes() for d in dfas)
        seen.setdefault(sig, b)
    return list(seen.values())


def _shortest_by_search(g, state, depth: int) -> int | None:
    """Length of a shortest completion by breadth-first search over bytes, or None if longer than ``depth``."""
    reps = _byte_classes(g)
    frontier, seen = [state], {state}
    for d in range(depth + 1):
        if any(g.is_complete(s) for s in frontier):
            return d
        nxt = []
        for s in frontier:
            for b in reps:
                s2 = g.step_bytes(s, bytes([b]))
                if s2 is not None and s2 not in seen:
                    seen.add(s2)
                    nxt.append(s2)
        frontier = nxt
    return None


def _prefixes(grammar: str) -> list[bytes]:
    out = []
    for text in ACCEPT[grammar]:
        data = text.encode()
        out += [data[:k] for k in range(len(data) + 1)]
    return out


@pytest.mark.parametrize("grammar", GRAMMARS)
def test_completions_make_every_prefix_a_sentence_lark_accepts(grammar: str) -> None:
    g = get_compiled("smollm2", grammar)
    for pre in _prefixes(grammar):
        m = g.matcher()
        m.accept_bytes(pre) if pre else None
        c = g.completer.complete(m.state)
        assert c is not None, pre
        text = (pre + c).decode("utf-8")
        g.lark.parse(text)  # the independent judge: lark itself
        if c:
            m.accept_bytes(c)
        assert m.is_complete(), (pre, c)


@pytest.mark.parametrize("grammar", GRAMMARS)
def test_completions_are_shortest(grammar: str) -> None:
    g = get_compiled("smollm2", grammar)
    prefixes = _prefixes(grammar)
    for pre in random.Random(0).sample(prefixes, min(25, len(prefixes))):
        m = g.matcher()
        m.accept_bytes(pre) if pre else None
        c = g.completer.complete(m.state)
        found = _shortest_by_search(g, m.state, 3)
        if found is None:
            assert len(c) > 3, (pre, c)
        else:
            assert len(c) == found, (pre, c, found)


@pytest.mark.parametrize("grammar,budgets", [
    ("json", [3, 10, 24]), ("json_rfc", [4, 16]), ("arithmetic", [2, 9]), ("csv", [2, 8]),
    ("sql_select", [14, 20]), ("binary", [6, 7]),
])
def test_every_row_finishes_inside_its_budget(grammar: str, budgets: list[int]) -> None:
    g = get_compiled("smollm2", grammar)
    eos = g.eos_token_id
    need = len(g.completer.complete(g.initial)) + 1
    limited = []
    for budget in budgets:
        assert budget >= need
        b = 8
        constraint = g.constraint(b, max_tokens=budget)
        res = decode(RandomLM(g.vocab_size, budget), Autoregressive(eos_token_id=eos), torch.tensor([[eos]] * b),
                     steps=budget, constraint=constraint, seed=budget)
        for ids in generated_tokens(res.state):
            assert len(ids) <= budget and ids[-1] == eos, (grammar, budget, ids)
            text = g.vocab.decode(ids[:-1]).decode("utf-8")
            g.lark.parse(text)
            if grammar == "json":
                json.loads(text)
        limited += constraint.limited
    # binary sentences all have 5 bits: no token can overrun a budget of 6, so the guard never acts
    assert any(limited) == (grammar != "binary")


def test_without_a_budget_rows_can_stop_incomplete() -> None:
    g = get_compiled("smollm2", "json")
    eos = g.eos_token_id
    res = decode(RandomLM(g.vocab_size, 3), Autoregressive(eos_token_id=eos), torch.tensor([[eos]] * 8),
                 steps=10, constraint=g.constraint(8), seed=3)
    assert any(not ids or ids[-1] != eos for ids in generated_tokens(res.state))


def test_guard_removes_exactly_the_tokens_that_cannot_finish() -> None:
    extra = [b"[[[[", b'{"', b'"}', b"]]", b"}]", b'"}]}', b"1234", b'", "', b"true}"]
    g = compile_grammar("json", _byte_vocab(extra), warm_seconds=0)
    guard = BudgetGuard(g, reserve=4)
    for pre in [b"", b"[", b'{"a": [1, {"b": "x', b'[[1, 2], [3', b'{"k": tr', b"-", b"[0.5e"]:
        m = g.matcher()
        m.accept_bytes(pre) if pre else None
        c = len(g.completer.complete(m.state))
        for remaining in range(c + 1, c + 7):
            mask = m.mask()
            out, changed = guard.filter(m.state, mask, remaining)
            expect = mask.clone()
            if remaining <= c + 1 + guard.reserve:
                for t in np.flatnonzero(mask.numpy()).tolist():
                    if t == g.eos_token_id:
                        continue
                    m2 = m.fork()
                    m2.accept_token(t)
                    after = len(g.completer.complete(m2.state))
                    rest = g.completer.complete(m.state)
                    tok = g.tokens.bytes_of[t]
                    if rest.startswith(tok):
                        after = min(after, len(rest) - len(tok))
                    expect[t] = after <= remaining - 2
            assert torch.equal(out, expect), (pre, remaining)
            assert changed == (not torch.equal(out, mask))
            assert out[g.completer.complete(m.state)[0] if c else g.eos_token_id]  # the way out stays open


def test_limited_flag_follows_rollback_and_fork() -> None:
    g = compile_grammar("json", _byte_vocab(), warm_seconds=0)
    c = g.constraint(1, max_tokens=3, reserve=0)
    c.mask()
    assert c.limited == [False]
    c.advance(torch.tensor([ord("[")]))  # 2 tokens left: only "]" then EOS still closes in time
    m = c.mask()[0]
    assert c.limited == [True] and m[ord("]")] and not m[ord("0")] and not m[ord("[")] and m.sum() == 1
    f = c.fork()
    c.rollback(1)
    assert c.limited == [False] and f.limited == [True]


def test_bad_budget_arguments() -> None:
    g = compile_grammar("binary", _byte_vocab(), warm_seconds=0)
    with pytest.raises(ValueError, match="max_tokens"):
        g.constraint(1, max_tokens=0)
    with pytest.raises(ValueError, match="reserve"):
        g.constraint(1, max_tokens=5, reserve=-1)


@pytest.mark.gpu
def test_budget_guard_on_cuda_finishes_every_row() -> None:
    g = compile_grammar("json", _byte_vocab([b"[[[[", b'{"', b'"}', b"]]"]), warm_seconds=0)
    eos, b, budget = g.eos_token_id, 16, 12
    constraint = g.constraint(b, "cuda", max_tokens=budget)
    assert constraint.mask().device.type == "cuda"
    res = decode(RandomLM(g.vocab_size, 5), Autoregressive(eos_token_id=eos), torch.tensor([[eos]] * b),
                 steps=budget, constraint=constraint, seed=5)
    for ids in generated_tokens(res.state):
        assert ids[-1] == eos and len(ids) <= budget
        json.loads(g.vocab.decode(ids[:-1]).decode("utf-8"))
    assert any(constraint.limited)


class _FixedLogits:
    """The same next-token logits ``(V,)`` for every row and step."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def __call__(self, state):  # noqa: ANN001
        from decoding.core.types import Prediction

        return Prediction(logits=self.logits.expand(state.batch_size, -1))


def test_guarded_samples_follow_the_model_renormalised_over_feasible_tokens() -> None:
    """``start: "a"* "b"`` with 4 tokens (EOS included): the exact law of the guarded sampler.

    Step 1 allows a and b; after "a", another "a" could still finish ("aab" + EOS) but after "aa"
    only "b" can. So P(b) = pb / (pa + pb), P(ab) = pa / (pa + pb) * pb / (pa + pb), P(aab) = the rest,
    where pa, pb are the model's probabilities; without the guard, "aaa..." rows would not finish.
    """
    from scipy.stats import chisquare

    g = compile_grammar('start: "a"* "b"', _byte_vocab(), warm_seconds=0)
    logits = torch.full((g.vocab_size,), -20.0)
    logits[ord("a")], logits[ord("b")] = 1.0, 0.0
    pa = 1 / (1 + math.exp(-1.0))
    exact = {"b": 1 - pa, "ab": pa * (1 - pa), "aab": pa * pa}
    n, eos = 6000, g.eos_token_id
    constraint = g.constraint(n, max_tokens=4, reserve=0)
    res = decode(_FixedLogits(logits), Autoregressive(eos_token_id=eos), torch.tensor([[eos]] * n),
                 steps=4, constraint=constraint, seed=11)
    counts = {k: 0 for k in exact}
    for ids in generated_tokens(res.state):
        assert ids[-1] == eos
        counts[g.vocab.decode(ids[:-1]).decode()] += 1
    p = chisquare([counts[k] for k in exact], [n * exact[k] for k in exact]).pvalue
    assert p > 1e-3, (counts, exact)
    # a guard acting one step too early (forcing "b" after "a") would never give "aab"
    assert counts["aab"] > 0.9 * n * exact["aab"]


def test_completions_repair_terminal_strings_that_would_merge() -> None:
    """``B``'s shortest string ``b`` would continue an open ``A`` lexeme (``/[ab]+/``): the completion takes
    ``B``'s shortest string that ends it (``c``); before, no completion was found and the guard stayed off."""
    import lark

    src = "start: A B\nA: /[ab]+/\nB: /[bc]+/\n"
    g = compile_grammar(src, _byte_vocab(), warm_seconds=0)
    judge = lark.Lark(src, parser="lalr")
    for pre in (b"", b"a", b"ab", b"bb"):
        m = g.matcher()
        m.accept_bytes(pre) if pre else None
        c = g.completer.complete(m.state)
        assert c is not None and len(c) == _shortest_by_search(g, m.state, 3), (pre, c)
        judge.parse((pre + c).decode())
