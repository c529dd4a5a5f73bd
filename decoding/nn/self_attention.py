"""Self-attention over the pixels of a feature map, perturbable for Perturbed-Attention Guidance.

Perturbed-Attention Guidance (PAG; Ahn et al., arXiv:2403.17377) replaces the self-attention map
by the identity, so each position only sees itself and the block outputs its value projection:
``attention(q, k, v) -> v``. A guidance wrapper contrasts the normal and the perturbed prediction.
Which rows of a batch are perturbed is set on the layer (``perturb``), usually through
:meth:`decoding.nn.unet.UNet.perturbed_attention`.
"""

from __future__ import annotations

from torch import Tensor, nn

from decoding.nn.attention import attention
from decoding.nn.resblock import group_norm


class SelfAttention2d(nn.Module):
    """Multi-head self-attention block with a residual connection: ``(B, C, H, W) -> (B, C, H, W)``.

    Attributes:
        perturb: ``None`` or ``False`` (normal attention), ``True`` (identity attention for every
            row), or a ``(B,)`` bool tensor selecting the rows that get identity attention.
    """

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"channels ({channels}) must be a multiple of head_dim ({head_dim})")
        self.heads = channels // head_dim
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.perturb: bool | Tensor | None = None
        self.backend: str | None = None

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        perturb = self.perturb
        if perturb is True:
            out = v
        else:
            out = attention(q.contiguous(), k.contiguous(), v.contiguous(), backend=self.backend)
            if isinstance(perturb, Tensor):
                if perturb.shape != (b,):
                    raise ValueError(f"perturb mask must have shape ({b},), got {tuple(perturb.shape)}")
                out = out.where(~perturb.to(out.device)[:, None, None, None], v)
        out = out.transpose(1, 2).reshape(b, h * w, c)  # (B, HW, C)
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)
