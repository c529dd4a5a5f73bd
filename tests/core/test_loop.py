"""The decode loop: callback, processors order, constraint masking, NaN detection, per-row NFE."""

from __future__ import annotations

import pytest
import torch

from decoding import Prediction, State, apply_processors, decode
from decoding.core.loop import NonFiniteLogitsError
from decoding.processes.autoregressive import Autoregressive, generated_tokens


class Uniform:
    def __init__(self, v: int, nfe: float | None = None) -> None:
        self.v, self.nfe = v, nfe

    def __call__(self, state: State) -> Prediction:
        b = state.batch_size
        nfe = None if self.nfe is None else torch.full((b,), self.nfe)
        return Prediction(logits=torch.zeros(b, self.v), nfe=nfe)


class OnlyEvenThenStop:
    """A toy constraint: even tokens only; records what it was fed."""

    def __init__(self, b: int, v: int) -> None:
        self.b, self.v, self.fed = b, v, []

    def mask(self, state: State) -> torch.Tensor:
        m = torch.zeros(self.b, self.v, dtype=torch.bool)
        m[:, ::2] = True
        return m

    def advance(self, tokens: torch.Tensor) -> None:
        self.fed.append(tokens.clone())

    def is_complete(self) -> torch.Tensor:
        return torch.ones(self.b, dtype=torch.bool)

    def rollback(self, n: int) -> None:
        del self.fed[-n:]

    def fork(self):
        return self


def test_constraint_masks_and_is_fed_emitted_tokens():
    c = OnlyEvenThenStop(4, 6)
    res = decode(Uniform(6), Autoregressive(), torch.zeros(4, 1, dtype=torch.long), steps=5, constraint=c, seed=0)
    toks = torch.tensor(generated_tokens(res.state))
    assert (toks % 2 == 0).all()
    assert torch.equal(torch.stack(c.fed, 1), toks)


def test_callback_sees_every_step_and_nfe_from_wrapper():
    seen = []
    res = decode(
        Uniform(5, nfe=2.0), Autoregressive(), torch.zeros(3, 1, dtype=torch.long), steps=4, seed=0,
        callback=lambda i, s, p: seen.append((i, s.step)),
    )
    assert seen == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert res.nfe.tolist() == [8.0, 8.0, 8.0] and res.steps == 4


def test_apply_processors_does_not_modify_input_and_keeps_allowed_set():
    logits = torch.randn(2, 5)
    before = logits.clone()

    def drop_all_but_1(lg, s):
        return torch.full_like(lg, float("-inf")).index_fill(-1, torch.tensor([1]), 0.0)

    class Even(OnlyEvenThenStop):
        pass

    out = apply_processors(logits, None, [drop_all_but_1], Even(2, 5))
    assert torch.equal(logits, before)
    # processors kept only token 1, the constraint forbids it: fall back to the constraint's set
    assert torch.isfinite(out[:, ::2]).all() and torch.isinf(out[:, 1::2]).all()


class NaNAt2:
    """NaN logits in row 1 at step 2."""

    def __call__(self, state):
        lg = torch.zeros(state.batch_size, 4)
        if state.step == 2:
            lg[1, 0] = float("nan")
        return Prediction(logits=lg)


def test_nan_logits_are_reported_with_the_step():
    with pytest.raises(NonFiniteLogitsError, match="step 2 in batch rows \\[1\\]"):
        decode(NaNAt2(), Autoregressive(), torch.zeros(2, 1, dtype=torch.long), steps=5, seed=0)


class EosAfter:
    """Row r emits token 1 r times, then EOS (token 0); counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, state):
        self.calls += 1
        b = state.batch_size
        lg = torch.full((b, 3), -30.0)
        eos = torch.arange(b) == state.step
        lg[eos, 0] = 0.0
        lg[~eos, 1] = 0.0
        return Prediction(logits=lg)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_sync_every_reads_flags_late_but_changes_no_output(k):
    ref = decode(EosAfter(), Autoregressive(eos_token_id=0, pad_token_id=2), torch.zeros(4, 1, dtype=torch.long),
                 steps=10, seed=3, sync_every=1)
    model = EosAfter()
    res = decode(model, Autoregressive(eos_token_id=0, pad_token_id=2), torch.zeros(4, 1, dtype=torch.long),
                 steps=10, seed=3, sync_every=k)
    assert generated_tokens(res.state) == generated_tokens(ref.state) == [[1] * r + [0] for r in range(4)]
    assert res.nfe.tolist() == ref.nfe.tolist() == [1.0, 2.0, 3.0, 4.0]  # NFE counts live rows only
    # all rows are done after step 4; the loop notices at the next multiple of k
    assert ref.steps == 4 and res.steps == -(-4 // k) * k == model.calls


def test_nan_logits_are_reported_with_the_step_when_checked_late():
    with pytest.raises(NonFiniteLogitsError, match="step 2 in batch rows \\[1\\]"):
        decode(NaNAt2(), Autoregressive(), torch.zeros(2, 1, dtype=torch.long), steps=9, seed=0, sync_every=4)
    with pytest.raises(ValueError, match="sync_every must be >= 1"):
        decode(NaNAt2(), Autoregressive(), torch.zeros(2, 1, dtype=torch.long), steps=9, seed=0, sync_every=0)


class NaNAtSteps:
    """NaN (odd steps) or +inf (even steps) logits in row r at the steps ``at[r]``."""

    def __init__(self, at: list[set[int]]) -> None:
        self.at = at

    def __call__(self, state):
        lg = torch.zeros(state.batch_size, 4)
        for r, steps in enumerate(self.at):
            if state.step in steps:
                lg[r, 1] = float("nan") if state.step % 2 else float("inf")
        return Prediction(logits=lg)


@pytest.mark.parametrize("sync_every", [1, 7, 1000])
@pytest.mark.parametrize("at, step, rows", [
    ([set(), {300}], 300, [1]),  # past the first fill of the 256-step flag buffer
    ([{256, 700}, {256}], 256, [0, 1]),  # the first row of a refilled buffer
    ([{3}, {3, 255}], 3, [0, 1]),
    ([set(), set(), {0}], 0, [2]),
])
def test_non_finite_logits_are_found_at_their_first_step_on_long_runs(sync_every, at, step, rows):
    with pytest.raises(NonFiniteLogitsError, match=f"step {step} in batch rows \\{rows}"):
        decode(NaNAtSteps(at), Autoregressive(), torch.zeros(len(at), 1, dtype=torch.long), steps=800, seed=0,
               sync_every=sync_every)
    res = decode(NaNAtSteps([set(), {799}]), Autoregressive(), torch.zeros(2, 1, dtype=torch.long), steps=799, seed=0)
    assert res.steps == 799 and res.nfe.tolist() == [799.0, 799.0]  # step 799 is never run


def test_nfe_mixes_reported_and_counted_calls():
    class Alternate(Uniform):
        """Reports an NFE of 2.5 on even steps, nothing on odd ones."""

        def __call__(self, state):
            pred = super().__call__(state)
            return pred if state.step % 2 else Prediction(logits=pred.logits, nfe=torch.full((state.batch_size,), 2.5))

    res = decode(Alternate(5), Autoregressive(eos_token_id=None), torch.zeros(2, 1, dtype=torch.long), steps=5, seed=0)
    assert res.nfe.tolist() == [3 * 2.5 + 2, 3 * 2.5 + 2]
