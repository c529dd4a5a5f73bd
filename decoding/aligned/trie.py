"""The trie of ASAp: visited prefixes with raw model probabilities and expected-future-grammaticality estimates.

Grammar-aligned decoding, ASAp (Park et al., arXiv 2405.21047). For a prefix ``u`` the expected
future grammaticality is ``EFG(u) = P(a grammatical completion | u)``. ASAp keeps an
over-approximation ``c(u)``, starting from the constrained-decoding guess ``c(u) = 1`` for every
prefix the grammar allows, and after each sample recomputes, bottom-up along the sampled path::

    c(u) = sum_v P(v | u) * c(u v)       (v over the tokens the grammar allows after u)

where a child never visited still counts ``c(u v) = 1`` and the EOS child counts 1 (the grammar
allows EOS only after a sentence). Each node stores, instead of the whole next-token row, only

- ``prob``: its raw model probability ``P(token | parent prefix)``;
- ``efg``: its estimate ``c`` (1 until known; fixed at 1 for EOS nodes);
- ``mass`` / ``n_allowed``: the model's total probability of the tokens the grammar allows next
  and how many there are, recorded when the model is first evaluated at this prefix.

Unvisited allowed children all have estimate 1, so their contribution is
``mass - sum(prob of visited children)``, and exactly 0 once every allowed child was visited
(counted, not subtracted, so a fully explored subtree is exact to rounding).

One tree per prompt (the distribution is conditional on it): :class:`PrefixTrie` is a forest
keyed by the prompt's token ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

Prefix = tuple[int, ...]


class Node:
    """One visited prefix. See the module docstring for the fields."""

    __slots__ = ("token", "prob", "efg", "mass", "n_allowed", "terminal", "children", "_adjust")

    def __init__(self, token: int = -1, prob: float = math.nan, terminal: bool = False) -> None:
        self.token = token
        self.prob = prob
        self.efg = 1.0
        self.mass = math.nan
        self.n_allowed = -1
        self.terminal = terminal
        self.children: dict[int, Node] = {}
        self._adjust: tuple[Tensor, Tensor] | None = None

    @property
    def evaluated(self) -> bool:
        """Whether the model's next-token distribution at this prefix was recorded."""
        return self.n_allowed >= 0

    def record(self, mass: float, n_allowed: int) -> None:
        """Store the allowed mass and count the first time the model is evaluated here."""
        if not self.evaluated:
            self.mass = float(mass)
            self.n_allowed = int(n_allowed)

    def child(self, token: int, prob: float, terminal: bool) -> Node:
        """The child for ``token``, created with raw probability ``prob`` if new."""
        node = self.children.get(token)
        if node is None:
            node = Node(token, float(prob), terminal)
            self.children[token] = node
        return node

    def recompute(self) -> None:
        """``efg = sum_visited prob * efg + (allowed mass of unvisited children)`` (no-op if unevaluated)."""
        if self.terminal or not self.evaluated:
            return
        visited_mass = 0.0
        value = 0.0
        for c in self.children.values():
            visited_mass += c.prob
            value += c.prob * c.efg
        unvisited = 0.0 if len(self.children) >= self.n_allowed else max(self.mass - visited_mass, 0.0)
        self.efg = value + unvisited

    def adjustments(self) -> tuple[Tensor, Tensor] | None:
        """Children whose estimate is below 1: ``(tokens (K,) long, log efg (K,) float32)``; None if none."""
        if self._adjust is None:
            toks = [t for t, c in self.children.items() if c.efg < 1.0]
            if not toks:
                return None
            logs = [math.log(self.children[t].efg) if self.children[t].efg > 0 else -math.inf for t in toks]
            self._adjust = (torch.tensor(toks, dtype=torch.long), torch.tensor(logs, dtype=torch.float32))
        return self._adjust

    def invalidate(self) -> None:
        self._adjust = None


class PrefixTrie:
    """A forest of :class:`Node` trees, one per prompt (a tuple of token ids)."""

    def __init__(self) -> None:
        self.roots: dict[Prefix, Node] = {}

    def root(self, prompt: Sequence[int]) -> Node:
        """The root for ``prompt`` (created on first use)."""
        key = tuple(int(t) for t in prompt)
        node = self.roots.get(key)
        if node is None:
            node = self.roots[key] = Node()
        return node

    def find(self, prompt: Sequence[int], prefix: Sequence[int]) -> Node | None:
        """The node of ``prefix`` under ``prompt``, or None if it was never visited."""
        node = self.roots.get(tuple(int(t) for t in prompt))
        for t in prefix:
            if node is None:
                return None
            node = node.children.get(int(t))
        return node

    def efg(self, prompt: Sequence[int], prefix: Sequence[int]) -> float:
        """The estimate ``c(prefix)``: 1 for a prefix never visited."""
        node = self.find(prompt, prefix)
        return 1.0 if node is None else node.efg

    def update(self, prompt: Sequence[int], tokens: Sequence[int]) -> None:
        """Recompute the estimates along the sampled path ``tokens``, deepest prefix first.

        Every node of the path must already exist (a session creates them while sampling).
        """
        node = self.roots.get(tuple(int(t) for t in prompt))
        if node is None:
            raise ValueError("no trie for this prompt: sample it through ASAp.session() before update()")
        path = [node]
        for i, t in enumerate(tokens):
            node = node.children.get(int(t))
            if node is None:
                raise ValueError(
                    f"token {int(t)} at position {i} was never visited in the trie: update() takes "
                    "sequences sampled through a session of the same ASAp"
                )
            path.append(node)
        for node in reversed(path):
            node.recompute()
            node.invalidate()

    def clear(self) -> None:
        self.roots.clear()

    def nodes(self) -> Iterator[tuple[int, Node]]:
        """Every node in preorder (children in insertion order) with its parent's index (-1 for roots)."""
        index = 0
        for root in self.roots.values():
            stack: list[tuple[int, Node]] = [(-1, root)]
            while stack:
                parent, node = stack.pop()
                yield parent, node
                me = index
                index += 1
                stack.extend((me, c) for c in reversed(list(node.children.values())))

    def __len__(self) -> int:
        return sum(1 for _ in self.nodes())
