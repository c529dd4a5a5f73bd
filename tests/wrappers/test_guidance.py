"""Guidance wrappers: each equals its reference at the degenerate setting, combines as its paper says,
and costs the model calls its docstring says (counted by the loop)."""

from __future__ import annotations

import pytest
import torch

import decoding as dc
from decoding.api.image import check_stitchable, guided, image_handle
from decoding.core.types import State
from decoding.models.image import ImageDiffusionModel
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers import DDIM
from decoding.solvers.ddim import ddim_update
from decoding.wrappers.guidance import CFG, CFGPP, PAG, GuidedModel, StitchModel, attention_layer_indices
from tests.api.fixtures import tiny_unet_model


@pytest.fixture(scope="module")
def model() -> ImageDiffusionModel:
    return tiny_unet_model(seed=0)


def _state(model: ImageDiffusionModel, t: float = 500.0, cond=(1, 4, 7)) -> State:
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return State(x=x, t=torch.full((3,), t, dtype=torch.float64), done=torch.zeros(3, dtype=torch.bool),
                 memory={"cond": None if cond is None else torch.tensor(cond), "schedule": model.schedule})


def _plain(model: ImageDiffusionModel, state: State, cond=...):
    memory = state.memory if cond is ... else {**state.memory, "cond": cond}
    return model(State(x=state.x, t=state.t, done=state.done, memory=memory))


def test_cfg_is_the_line_through_conditional_and_unconditional(model) -> None:
    s = _state(model)
    c, u = _plain(model, s), _plain(model, s, cond=None)
    for w in (0.0, 1.0, 3.0):
        g = GuidedModel(model, model.null_label, cfg=CFG(w))(s)
        assert torch.allclose(g.x0, u.x0 + w * (c.x0 - u.x0), atol=1e-5)
        assert torch.allclose(g.eps, u.eps + w * (c.eps - u.eps), atol=1e-5)
        assert torch.allclose(model.schedule.alpha(s.t[:1]).float() * g.x0 + model.schedule.sigma(s.t[:1]).float() * g.eps,
                              s.x, atol=1e-4)  # still a consistent (x0, eps) pair at x_t
        assert g.nfe.tolist() == [2.0] * 3


def test_cfg_rescale_matches_the_conditional_std_in_v(model) -> None:
    s = _state(model)
    a, sig = float(model.schedule.alpha(s.t[:1])), float(model.schedule.sigma(s.t[:1]))
    v = lambda p: a * p.eps - sig * p.x0  # noqa: E731
    plain = GuidedModel(model, model.null_label, cfg=CFG(4.0))(s)
    off = GuidedModel(model, model.null_label, cfg=CFG(4.0, rescale=0.0))(s)
    full = GuidedModel(model, model.null_label, cfg=CFG(4.0, rescale=1.0))(s)
    half = GuidedModel(model, model.null_label, cfg=CFG(4.0, rescale=0.5))(s)
    c = _plain(model, s)
    assert torch.equal(off.x0, plain.x0)
    std = lambda t: t.flatten(1).std(1)  # noqa: E731
    assert torch.allclose(std(v(full)), std(v(c)), rtol=1e-4)
    assert torch.allclose(v(half), 0.5 * v(full) + 0.5 * v(plain), atol=1e-4)


def test_guidance_interval_guides_only_inside(model) -> None:
    g = GuidedModel(model, model.null_label, cfg=CFG(3.0, interval=(300.0, 700.0)))
    inside, outside = _state(model, t=500.0), _state(model, t=900.0)
    assert g.variants(inside) == ["c", "u"] and g.variants(outside) == ["c"]
    out = g(outside)
    assert torch.equal(out.x0, _plain(model, outside).x0) and out.nfe.tolist() == [1.0] * 3


def test_cfgpp_renoises_with_the_unconditional_noise(model) -> None:
    s = _state(model)
    c, u = _plain(model, s), _plain(model, s, cond=None)
    g = GuidedModel(model, model.null_label, cfgpp=CFGPP(0.6))(s)
    assert torch.allclose(g.x0, u.x0 + 0.6 * (c.x0 - u.x0), atol=1e-5)
    assert torch.allclose(g.eps, u.eps, atol=1e-5)
    # one DDIM step is alpha_next x0_lambda + sigma_next eps_u (the paper's sampler)
    a_t, s_t = 0.8, 0.6
    assert torch.allclose(ddim_update(g.x0, g.eps, 0.5, 0.5, a_t, s_t), a_t * g.x0 + s_t * u.eps, atol=1e-5)


def test_cfgpp_at_zero_is_unconditional_ddim(model) -> None:
    h = image_handle(model, "tiny", {}, model.device)
    guided_out = dc.generate(h, n=3, class_label=[1, 4, 7], solver="ddim", steps=6, guidance=["cfgpp:0"], seed=2)
    uncond = dc.generate(h, n=3, solver="ddim", steps=6, seed=2)
    # the unconditional rows of a 2B-row call against a B-row call: float32 rounding of the batched kernels only
    assert torch.allclose(guided_out.images, uncond.images, atol=1e-5)
    assert guided_out.nfe == [12.0] * 3 and uncond.nfe == [6.0] * 3


def test_pag_without_perturbed_layers_is_the_plain_model(model) -> None:
    s = _state(model)
    out = GuidedModel(model, model.null_label, pag=PAG(2.0), pag_layers=[])(s)
    assert torch.allclose(out.x0, _plain(model, s).x0, atol=1e-6) and out.nfe.tolist() == [2.0] * 3


def test_pag_perturbs_the_chosen_layer_and_combines_with_cfg(model) -> None:
    s = _state(model)
    layers = attention_layer_indices(model.net, None)
    c, u = _plain(model, s), _plain(model, s, cond=None)
    with model.net.perturbed_attention(layers=layers):
        p = _plain(model, s)
    assert not torch.allclose(p.x0, c.x0)  # identity attention changes the prediction
    pag = GuidedModel(model, model.null_label, pag=PAG(1.5), pag_layers=layers)(s)
    assert torch.allclose(pag.x0, c.x0 + 1.5 * (c.x0 - p.x0), atol=1e-4)
    both = GuidedModel(model, model.null_label, cfg=CFG(2.0), pag=PAG(1.5), pag_layers=layers)(s)
    assert torch.allclose(both.x0, u.x0 + 2.0 * (c.x0 - u.x0) + 1.5 * (c.x0 - p.x0), atol=1e-4)
    assert both.nfe.tolist() == [3.0] * 3  # three predictions, one batched call


def test_pag_layer_names_are_exact(model) -> None:
    names = [n for n, m in model.net.named_modules() if m in set(model.net.attention_layers())]
    assert attention_layer_indices(model.net, [names[-1], 0]) == [len(names) - 1, 0]
    prefix = names[0].rsplit(".", 1)[0]  # e.g. "down.1": a prefix of a name, not a name
    with pytest.raises(ValueError, match="no self-attention layer named"):
        attention_layer_indices(model.net, [prefix])
    with pytest.raises(ValueError, match="out of range"):
        attention_layer_indices(model.net, [len(names)])


class Spy:
    """Counts calls and returns a fixed prediction tagged by ``value``."""

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, []

    def __call__(self, state: State):
        self.calls.append(state.step)
        return dc.Prediction(x0=torch.full_like(state.x, self.value), eps=torch.zeros_like(state.x))


@pytest.mark.parametrize(("fraction", "small_steps"), [(0.0, 0), (0.4, 4), (1.0, 10)])
def test_stitch_runs_the_small_model_first(model, fraction, small_steps) -> None:
    large, small = Spy(1.0), Spy(-1.0)
    res = dc.decode(StitchModel(large, small, fraction), ContinuousProcess(model.schedule, DDIM()), (2, 1, 4, 4),
                    steps=10, seed=0)
    assert small.calls == list(range(small_steps)) and large.calls == list(range(small_steps, 10))
    assert res.nfe.tolist() == [10.0, 10.0]  # one call per step


def test_stitch_ends_equal_the_single_models(model) -> None:
    large = image_handle(model, "large", {}, model.device)
    small = image_handle(tiny_unet_model(seed=1), "small", {}, model.device)
    kw = dict(n=2, class_label=3, steps=5, seed=1)
    only_large, only_small = dc.generate(large, **kw), dc.generate(small, **kw)
    assert torch.equal(dc.generate(large, guidance=[dc.Stitch(small, 0.0)], **kw).images, only_large.images)
    assert torch.equal(dc.generate(large, guidance=[dc.Stitch(small, 1.0)], **kw).images, only_small.images)
    mixed = dc.generate(large, guidance=[dc.Stitch(small, 0.4), "cfg:2"], **kw)
    assert mixed.nfe == [10.0, 10.0] and mixed.settings["guidance"] == ["stitch:small:0.4", "cfg:2"]


def test_stitch_refuses_models_of_another_schedule(model) -> None:
    from decoding.solvers.schedules import DiscreteVPSchedule

    other = ImageDiffusionModel(tiny_unet_model(seed=2).net, DiscreteVPSchedule("linear"))
    large = image_handle(model, "large", {}, model.device)
    with pytest.raises(ValueError, match="must share it"):
        check_stitchable(large, image_handle(other, "linear", {}, model.device))
    with pytest.raises(ValueError, match="does not combine"):
        guided(large, [CFG(2.0), CFGPP(0.5)])
