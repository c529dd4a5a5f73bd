"""The RADD network (decoding.nn.radd): no time input, clean-token log-probs, save/load round trip."""

from __future__ import annotations

import pytest
import torch

from decoding.core.types import State
from decoding.nn.radd import RADDModel, RADDNet, load_radd, save_radd


def test_output_is_log_probs_over_clean_tokens_and_ignores_time(tmp_path) -> None:
    torch.manual_seed(0)
    net = RADDNet(30, dim=32, n_layers=1, n_heads=2, max_len=16).eval()
    x = torch.randint(0, 31, (2, 8))
    out = net(x)
    assert out.shape == (2, 8, 30) and torch.allclose(out.exp().sum(-1), torch.ones(2, 8))
    model = RADDModel(net)
    a = model(State(x=x, t=torch.zeros(2), done=torch.zeros(2, dtype=torch.bool))).logits
    b = model(State(x=x, t=torch.ones(2), done=torch.zeros(2, dtype=torch.bool))).logits
    assert torch.equal(a, b) and model.mask_id == 30 and model.max_length == 16
    save_radd(net, tmp_path / "m", extra={"seq_len": 8}, dtype=torch.bfloat16)
    back = load_radd(tmp_path / "m")
    ref = RADDNet(30, dim=32, n_layers=1, n_heads=2, max_len=16)
    ref.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in net.state_dict().items()})
    assert torch.equal(back(x), ref.eval()(x))


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a RADD model folder"):
        load_radd(tmp_path)
