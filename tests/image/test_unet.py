"""The class-conditional UNet: shapes, sizes, attention through the engine's module, PAG."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import decoding.nn.self_attention as sa
from decoding.models.image import SIZES
from decoding.nn.unet import UNet, UNetConfig


def tiny(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(copy.deepcopy(SIZES["tiny"])).eval()
    # zero-initialised output layers make every block the identity; randomise for real tests
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def inputs(b: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 28, 28, generator=g), torch.randn(b, generator=g) * 5, torch.tensor([0, 3, 10][:b])


def flops(net: UNet) -> float:
    """FLOPs of one call on one image."""
    x, lam, y = torch.zeros(1, 1, 28, 28), torch.zeros(1), torch.zeros(1, dtype=torch.long)
    net.set_attention_backend("naive")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x, lam, y)
    return fc.get_total_flops()


def test_shapes_and_null_class() -> None:
    net = tiny()
    x, lam, y = inputs()
    out = net(x, lam, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert net.cfg.null_class == 10
    # the class changes the output
    assert not torch.allclose(net(x, lam, torch.tensor([1, 1, 1])), net(x, lam, torch.tensor([2, 2, 2])))


def test_small_is_about_ten_times_cheaper_and_checkpoints_fit() -> None:
    nets = {size: UNet(SIZES[size]) for size in ("large", "small")}
    ratio = flops(nets["large"]) / flops(nets["small"])
    assert 9.0 <= ratio <= 12.0, ratio
    for size, bytes_per_param in (("large", 2), ("small", 4)):  # bf16 / fp32 storage
        n = sum(p.numel() for p in nets[size].state_dict().values())
        assert n * bytes_per_param <= 16 * 1024 * 1024, (size, n)


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="head_dim"):
        UNetConfig(channels=20, head_dim=32)
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(attention_levels=(5,))
    with pytest.raises(ValueError, match="unknown UNet config keys"):
        UNetConfig.from_dict({"channels": 8, "widht": 3})


def test_self_attention_goes_through_the_engine_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    net = tiny()
    calls = []
    real = sa.attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sa, "attention", spy)
    x, lam, y = inputs()
    net(x, lam, y)
    assert len(calls) == len(net.attention_layers()) > 0
    # all backends agree
    net.set_attention_backend("naive")
    ref = net(x, lam, y)
    net.set_attention_backend("sdpa")
    assert torch.allclose(net(x, lam, y), ref, atol=1e-5)


def test_identity_attention_outputs_the_values() -> None:
    net = tiny()
    layer = net.attention_layers()[0]
    h = torch.randn(2, layer.proj.in_features, 14, 14)
    b, c, hh, ww = h.shape
    tokens = layer.norm(h).flatten(2).transpose(1, 2)
    v = layer.qkv(tokens)[..., 2 * c :]
    expected = h + layer.proj(v).transpose(1, 2).reshape(b, c, hh, ww)
    layer.perturb = True
    assert torch.allclose(layer(h), expected, atol=1e-5)
    layer.perturb = None
    assert not torch.allclose(layer(h), expected, atol=1e-3)


def test_perturbed_attention_rows_and_restore() -> None:
    net = tiny()
    x, lam, y = inputs()
    normal = net(x, lam, y)
    with net.perturbed_attention():
        everything = net(x, lam, y)
    rows = torch.tensor([False, True, False])
    with net.perturbed_attention(rows=rows):
        some = net(x, lam, y)
    assert not torch.allclose(everything, normal, atol=1e-4)
    assert torch.allclose(some[~rows], normal[~rows], atol=1e-5)
    assert torch.allclose(some[rows], everything[rows], atol=1e-5)
    assert all(layer.perturb is None for layer in net.attention_layers())
    assert torch.allclose(net(x, lam, y), normal)
    with pytest.raises(ValueError, match="out of range"), net.perturbed_attention(layers=[99]):
        pass
