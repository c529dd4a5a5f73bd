"""One DTS rollout per row as a decode-loop process: descend the tree, expand it, roll out to ``x_0``.

:class:`TreeProcess` wraps a :class:`~decoding.processes.continuous.ContinuousProcess` whose solver
is stochastic and keeps no history (DDPM, DDIM with ``eta > 0``): the solver's step from a node
is the sampler's transition ``p(x_{t-1} | x_t)`` that children are drawn from. Each row sits on a
node of :class:`~decoding.control.tree.DiffusionTree` (``state.memory["dts"]["node"]``). At every
step a row either

- expands its node: the solver steps it (with fresh noise from the run's generator) and the new
  state becomes a child; from a new node the row keeps expanding, so the rest of the rollout is
  appended to the tree (the paper's rollout), or
- descends: it moves to an existing child drawn with ``P ∝ exp(lam v)`` (DTS) or the best one
  (DTS*); its model call is skipped (:class:`TreeModel`).

A node expands while it has fewer children than its depth allows; rows that meet at one node take
its free slots in row order, and a row that finds no free slot and no valued child (the first pass
over a new node) follows one of the children created there in the same step. Values are backed up
after the pass (:class:`~decoding.control.dts.DTS`), so a pass is one call of :func:`decoding.decode`
and there is no second loop. Jain et al., arXiv 2506.20701.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from decoding.control.rows import take_rows
from decoding.control.tree import DiffusionTree, group_rank
from decoding.core.protocols import Model
from decoding.core.types import Prediction, State
from decoding.processes.continuous import ContinuousProcess

KEY = "dts"


@dataclass
class TreeProcess:
    """The decode-loop process of a DTS pass (module docstring).

    Args:
        inner: the continuous process (schedule and a stochastic, history-free solver).
        tree: the forest to grow; its ``steps`` must equal the ``steps`` of the decode call.
        greedy: descend to the best child (DTS*) instead of drawing one (DTS).

    ``prompt`` of :meth:`init`: the root id of each row ``(B,)`` (long).
    """

    inner: ContinuousProcess
    tree: DiffusionTree
    greedy: bool = False

    def __post_init__(self) -> None:
        if not getattr(self.inner.solver, "stochastic", False):
            raise ValueError(
                f"DTS grows children from the sampler's stochastic transition; {type(self.inner.solver).__name__} "
                "is deterministic: use solver='ddpm' or DDIM with eta > 0"
            )

    def schedule(self, steps: int) -> Tensor:
        if steps != self.tree.steps:
            raise ValueError(f"the tree was grown with {self.tree.steps} steps, the call asks for {steps}")
        grid = self.inner.schedule(steps)
        sigmas = self.inner.noise_schedule.sigma(grid)
        for d in range(1, steps + 1):  # node at depth d steps from grid[d-1] to grid[d]
            if float(sigmas[d]) == 0.0:
                self.tree.set_width(d, min(1, self.tree.max_children))  # the step to data is deterministic
        return grid

    def init(self, prompt: Any, generator: torch.Generator) -> State:
        roots = torch.as_tensor(prompt).long().cpu().reshape(-1)
        if roots.numel() == 0 or bool(((roots < 0) | (roots >= len(self.tree)) | (self.tree.depth[roots] != 0)).any()):
            raise ValueError("the prompt of a DTS pass is the root id of each row (see DiffusionTree.add_roots)")
        shape = self.tree.shape

        def noise(k: int) -> Tensor:
            return torch.randn((k, *shape), generator=generator, dtype=self.inner.dtype, device=generator.device)

        nodes, x = self._advance(roots, self._expanding(roots), lambda rows: noise(int(rows.numel())), generator)
        state = self.inner.init(x, generator)
        return state.remember(**{KEY: {"node": nodes, "expand": self._expanding(nodes)}})

    def step(self, state: State, pred: Prediction, t_next: Tensor, generator: torch.Generator) -> State:
        info = state.memory[KEY]
        nodes, expand = info["node"], info["expand"]

        def transition(rows: Tensor) -> Tensor:
            idx = rows.to(state.x.device)
            sub = take_rows(state, rows, drop=(KEY,))
            sub_pred = Prediction(
                x0=None if pred.x0 is None else pred.x0.index_select(0, idx),
                eps=None if pred.eps is None else pred.eps.index_select(0, idx),
            )
            out = self.inner.step(sub, sub_pred, t_next, generator)
            if out.memory.get("solver") is not None:
                raise ValueError(
                    f"DTS needs a solver without history (each node must be a Markov state); "
                    f"{type(self.inner.solver).__name__} keeps one: use solver='ddpm' or DDIM with eta > 0"
                )
            return out.x

        new_nodes, x = self._advance(nodes, expand, transition, generator)
        grid = state.memory["grid"]
        last = state.step + 1 == grid.numel() - 1
        b = state.batch_size
        return replace(
            state,
            x=x.to(state.x.dtype),
            t=torch.full((b,), float(t_next), dtype=torch.float64, device=state.x.device),
            done=torch.full((b,), last, dtype=torch.bool),
            step=state.step + 1,
            memory={**state.memory, "solver": None, KEY: {"node": new_nodes, "expand": self._expanding(new_nodes)}},
        )

    def _expanding(self, nodes: Tensor) -> Tensor:
        """``(B,)`` rows that take a free child slot of their node (in row order among rows at one node)."""
        return group_rank(nodes) < self.tree.free_slots(nodes)

    def _advance(self, nodes: Tensor, expand: Tensor, make: Any, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Move every row one depth down; returns the new nodes ``(B,)`` and their states ``(B, *shape)``."""
        tree = self.tree
        child = torch.empty_like(nodes)
        rows = expand.nonzero().flatten()
        if rows.numel():
            child[rows] = tree.add_children(nodes[rows], make(rows))
        rest = (~expand).nonzero().flatten()
        if rest.numel():
            valued = tree.n_valued(nodes[rest]) > 0
            pick = rest[valued]
            if pick.numel():
                child[pick] = tree.select(nodes[pick], generator, self.greedy)
            orphans = rest[~valued]
            if orphans.numel():
                child[orphans] = _follow(nodes, rows, child, orphans)
        return child, tree.x.index_select(0, child.to(tree.x.device))


def _follow(nodes: Tensor, expanded: Tensor, child: Tensor, orphans: Tensor) -> Tensor:
    """Children for rows whose node had no free slot and no valued child: the ones made there this step.

    Orphan ``j`` at a node where ``k`` rows expanded follows the ``(j mod k)``-th of them.
    """
    out = torch.empty_like(orphans)
    made: dict[int, list[int]] = {}
    for r in expanded.tolist():
        made.setdefault(int(nodes[r]), []).append(int(child[r]))
    ranks = group_rank(nodes[orphans])
    for i, (r, k) in enumerate(zip(orphans.tolist(), ranks.tolist(), strict=True)):
        kids = made.get(int(nodes[r]))
        if not kids:
            raise ValueError("a row reached a node with no child to follow (max_children must be >= 1)")
        out[i] = kids[k % len(kids)]
    return out


class TreeModel:
    """Call ``model`` only on the rows that expand their node this step (``state.memory["dts"]["expand"]``).

    The other rows descend to an existing child and need no prediction: they get zeros and
    ``Prediction.nfe`` 0, so the loop counts exactly the evaluations spent.
    """

    def __init__(self, model: Model) -> None:
        self.model = model

    def __call__(self, state: State) -> Prediction:
        expand = state.memory[KEY]["expand"]
        b = state.batch_size
        dev = state.x.device
        nfe = expand.to(torch.float64)
        if bool(expand.all()):
            pred = self.model(state)
            return Prediction(x0=pred.x0, eps=pred.eps, nfe=nfe if pred.nfe is None else pred.nfe.double().cpu())
        rows = expand.nonzero().flatten()
        x0 = torch.zeros_like(state.x)
        eps = torch.zeros_like(state.x)
        if rows.numel():
            pred = self.model(take_rows(state, rows, drop=(KEY,)))
            idx = rows.to(dev)
            if pred.x0 is not None:
                x0 = x0.index_copy(0, idx, pred.x0.to(x0.dtype))
            if pred.eps is not None:
                eps = eps.index_copy(0, idx, pred.eps.to(eps.dtype))
            if pred.nfe is not None:
                nfe = torch.zeros(b, dtype=torch.float64).index_copy(0, rows, pred.nfe.double().cpu())
            return Prediction(x0=None if pred.x0 is None else x0, eps=None if pred.eps is None else eps, nfe=nfe)
        return Prediction(x0=x0, eps=eps, nfe=nfe)
