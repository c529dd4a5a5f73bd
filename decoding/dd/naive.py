"""The naive one-step baseline of Distilled Decoding's comparison (arXiv 2412.17153, sec. 4): every token at once.

One teacher pass over ``[class, r_1, ..., r_{n-1}]`` with a context of tokens drawn uniformly from the
codebook (the true prefix is unknown without sequential decoding), then every position sampled
independently from the (guided) next-token distribution it got. It ignores the dependence between
tokens, which is what DD's deterministic map keeps; its FID shows the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.core.sampling import sample_categorical
from decoding.core.types import Prediction, State
from decoding.models.ar_image import ARImageModel


@dataclass(frozen=True)
class OnePass:
    """Process: ``init`` takes the ``(B, 1)`` class-token prompt; one step samples all ``n`` tokens."""

    codebook_size: int
    num_tokens: int

    def init(self, prompt: Tensor, generator: torch.Generator) -> State:
        if prompt.dim() != 2 or prompt.shape[1] != 1:
            raise ValueError(f"OnePass takes the (B, 1) class-token prompt, got {tuple(prompt.shape)}")
        b, dev = prompt.shape[0], prompt.device
        context = torch.randint(0, self.codebook_size, (b, self.num_tokens - 1), generator=generator, device=dev)
        return State(x=torch.cat([prompt, context], dim=1), t=torch.zeros(b, dtype=torch.long, device=dev),
                     done=torch.zeros(b, dtype=torch.bool, device=dev))

    def schedule(self, steps: int) -> Tensor:
        if steps != 1:
            raise ValueError(f"the one-pass baseline takes exactly 1 step, got {steps}")
        return torch.tensor([0, self.num_tokens])

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        """Sample each position of ``pred.logits`` ``(B, n, K)`` independently; ``x`` becomes ``[class, q_1..q_n]``."""
        if pred.logits is None or pred.logits.shape[1:] != (self.num_tokens, self.codebook_size):
            raise ValueError(f"the one-pass baseline needs logits (B, {self.num_tokens}, {self.codebook_size})")
        b = state.x.shape[0]
        tokens = sample_categorical(pred.logits.reshape(b * self.num_tokens, -1), generator).view(b, self.num_tokens)
        return State(x=torch.cat([state.x[:, :1], tokens], dim=1), t=torch.full_like(state.t, self.num_tokens),
                     done=torch.ones_like(state.done), step=state.step + 1, memory=state.memory)


class OnePassModel:
    """The teacher's logits at every position of ``state.x`` in one call (``(B, n, K)``, guided as the teacher is)."""

    def __init__(self, teacher: ARImageModel) -> None:
        self.teacher = teacher

    def __call__(self, state: State) -> Prediction:
        logits = self.teacher.all_logits(state.x)
        nfe = None if self.teacher.guidance == 1.0 else torch.full((state.x.shape[0],), 2.0, device=logits.device)
        return Prediction(logits=logits, nfe=nfe)
