"""Property tests: the fast mask equals the slow lark oracle on random reachable prefixes.

For each shipped grammar and both tokenizers (SmolLM2's 49,152-token byte-level BPE and GPT-2's
50,257-token BPE from the openai-whisper ranks file), hypothesis picks a prefix of a tokenized
sample document and then a few random allowed tokens (biased to short, structural ones).
There the fast mask must agree with the oracle on: a sample of the allowed tokens (soundness),
a sample of the refused tokens, including "near misses" that share their first byte with an
allowed token (completeness), and on EOS (completeness of the text).
Whenever EOS is allowed, lark itself must parse the text.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.grammar.grammar_fixtures import GRAMMARS, TOKENIZERS, get_compiled, get_tokenizer
from tests.grammar.grammar_oracle import Oracle
from tests.grammar.grammar_samples import SEEDS

EXAMPLES = int(os.environ.get("GRAMMAR_ORACLE_EXAMPLES", "8"))
PER_KIND = int(os.environ.get("GRAMMAR_ORACLE_TOKENS", "40"))
_oracles: dict[str, Oracle] = {}


def _encode(tok: object, text: str) -> list[int]:
    return list(
        tok.encode(text, add_special_tokens=False)
        if hasattr(tok, "convert_ids_to_tokens")
        else tok.encode(text)
    )


def _check_point(g, oracle: Oracle, m, cfg, pending: bytes, rng: random.Random) -> None:
    mask = m.mask().numpy()
    vocab = g.tokens.bytes_of
    allowed = [int(i) for i in np.flatnonzero(mask) if i != g.eos_token_id]
    refused = [int(i) for i in np.flatnonzero(~mask) if vocab[i]]
    firsts = {vocab[i][0] for i in allowed}
    near = [i for i in refused if vocab[i][0] in firsts]
    picks = set(rng.sample(allowed, min(PER_KIND, len(allowed))))
    picks |= set(rng.sample(refused, min(PER_KIND, len(refused))))
    picks |= set(rng.sample(near, min(PER_KIND, len(near))))
    for i in sorted(picks):
        want = oracle.token_allowed(cfg, pending, vocab[i])
        assert bool(mask[i]) == want, (
            f"{g.name}: after {m.text()!r} token {i} {vocab[i]!r}: fast={bool(mask[i])} oracle={want}"
        )
    complete = not pending and oracle.complete_cfg(cfg)
    assert bool(mask[g.eos_token_id]) == complete, f"{g.name}: EOS after {m.text()!r}: oracle={complete}"
    for i in sorted(picks)[:3]:  # the scalar path (accept_token) agrees with the mask too
        if mask[i]:
            f = m.fork()
            f.accept_token(i)
    if complete:
        g.lark.parse(m.text())  # a text the constraint calls complete is a sentence for lark


@pytest.mark.parametrize("tok_name", TOKENIZERS)
@pytest.mark.parametrize("grammar", GRAMMARS)
def test_fast_mask_equals_oracle(tok_name: str, grammar: str) -> None:
    tok = get_tokenizer(tok_name)
    g = get_compiled(tok_name, grammar)
    oracle = _oracles.setdefault(grammar, Oracle(g.lark))
    seeds = [_encode(tok, s) for s in SEEDS[grammar]]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        ids = data.draw(st.sampled_from(seeds), label="seed")
        cut = data.draw(st.integers(0, len(ids)), label="cut")
        walk = data.draw(st.integers(0, 4), label="walk")
        rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="rng"))
        m = g.matcher()
        cfg, pending = oracle.initial(), b""
        for t in ids[:cut]:
            m.accept_token(t)
            cfg, pending = oracle.feed_bytes(cfg, pending, g.tokens.bytes_of[t])
        _check_point(g, oracle, m, cfg, pending, rng)
        for _ in range(walk):
            mask = m.mask().numpy()
            allowed = [int(i) for i in np.flatnonzero(mask) if i != g.eos_token_id]
            if not allowed:
                break
            short = [i for i in allowed if len(g.tokens.bytes_of[i]) <= 2]
            pool = short if short and rng.random() < 0.6 else allowed
            t = pool[rng.randrange(len(pool))]
            m.accept_token(t)
            cfg, pending = oracle.feed_bytes(cfg, pending, g.tokens.bytes_of[t])
            _check_point(g, oracle, m, cfg, pending, rng)

    run()


def test_oracle_rejects_what_lark_rejects() -> None:
    """The oracle itself: complete exactly on lark's sentences for a few hand-picked strings."""
    g = get_compiled("smollm2", "json")
    oracle = Oracle(g.lark)
    for text, ok in [
        ('{"a": [1, 2]}', True),
        ('{"a": [1, 2]', False),
        ("[1, 2,]", False),
        ('"\\u00e9"', True),
    ]:
        assert oracle.is_sentence(text.encode()) is ok, text
