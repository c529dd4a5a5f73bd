"""Grammar-aligned requests (``aligned: true``): ASAp (arXiv 2405.21047) with one trie on disk per
model + grammar + sampling settings, kept across restarts.

ASAp is sequential: each sample reweights with the trie that every earlier sample updated. An
aligned request therefore runs on the model's thread as one whole
:func:`decoding.aligned.generate_aligned` call, one sample per ``decode`` (the paper's algorithm,
the same as ``decoding.generate(..., aligned=True)``), outside the shared batch: the batch pauses
while it runs, and concurrent aligned requests on one trie run one after the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from decoding.aligned import ASAp, generate_aligned
from decoding.api.causal_lm import trie_signature
from decoding.api.options import Sampling
from decoding.core.types import new_generator


class TrieStore:
    """ASAp tries by signature, loaded from ``folder`` on first use and saved after every request."""

    def __init__(self, lm: Any, folder: Path) -> None:
        self.lm = lm
        self.folder = Path(folder)
        self.tries: dict[str, ASAp] = {}

    def path(self, signature: str) -> Path:
        return self.folder / (hashlib.sha256(signature.encode()).hexdigest()[:32] + ".trie")

    def get(self, signature: str) -> ASAp:
        asap = self.tries.get(signature)
        if asap is None:
            eos = tuple(self.lm.eos_token_ids)
            path = self.path(signature)
            asap = ASAp.load(path, signature=signature, eos_token_id=eos) if path.exists() else ASAp(eos, signature=signature)
            self.tries[signature] = asap
        return asap

    def run(self, prompt_ids: list[int], n: int, seed: int, sampling: Sampling, max_tokens: int, grammar: Any,
            source: str, on_sample: Callable[[list[int]], None]) -> list[list[int]]:
        """Draw ``n`` aligned samples (called on the model's thread); each sample also goes to ``on_sample``,
        the last one after the trie is saved (an answered request is on disk)."""
        lm = self.lm
        if not lm.eos_token_ids:
            raise ValueError(f"model {lm.name} has no EOS token; grammar-aligned decoding needs one")
        signature = trie_signature(lm.name, source, sampling)
        asap = self.get(signature)
        if hasattr(lm.model, "capacity"):  # static KV cache: room for this generation
            lm.model.capacity = len(prompt_ids) + max_tokens + 1
        ids = torch.tensor(prompt_ids, dtype=torch.long, device=lm.device)
        held: list[list[int]] = []

        def hand_on(seqs: list[list[int]]) -> None:
            for seq in seqs:
                if held:
                    on_sample(held.pop())
                held.append(seq)

        run = generate_aligned(
            lm.model, lambda b: grammar.constraint(batch_size=b, device=lm.device), ids, num_samples=n,
            max_new_tokens=max_tokens, eos_token_id=tuple(lm.eos_token_ids), batch_size=1,
            processors=sampling.processors(), pad_token_id=lm.pad_token_id, trie=asap,
            generator=new_generator(seed, lm.device), on_batch=hand_on,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        asap.save(self.path(signature))
        for seq in held:
            on_sample(seq)
        return run.sequences
