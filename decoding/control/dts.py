"""Diffusion Tree Sampling (DTS) and Diffusion Tree Search (DTS*), Jain et al., arXiv 2506.20701.

Target: ``p(x) exp(lam r(x))`` for a reward ``r`` known only at ``x_0``. :class:`DTS` holds a
:class:`~decoding.control.tree.DiffusionTree` (one tree per requested sample) that outlives calls:

- :meth:`DTS.grow` runs ``rollouts`` rollouts per tree. A batch of rollouts is ONE call of
  :func:`decoding.decode` with :class:`~decoding.control.tree_process.TreeProcess` (descend,
  expand, roll out) and :class:`~decoding.control.tree_process.TreeModel` (model calls only for
  expanding rows); the terminal rewards are then backed up as soft values.
- :meth:`DTS.draw` returns one sample per tree: a Boltzmann descent (DTS, asymptotically exact)
  or, with ``greedy=True``, the highest-reward leaf found by the greedy search (DTS*).

Anytime: calling :meth:`grow` again adds rollouts to the same trees (better samples); the trees
are saved and loaded with safetensors (:meth:`DTS.save`, :meth:`DTS.load`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.control.rewards import Reward, call_reward
from decoding.control.tree import DiffusionTree
from decoding.control.tree_process import KEY, TreeModel, TreeProcess
from decoding.core.loop import decode
from decoding.core.protocols import Model
from decoding.processes.continuous import ContinuousProcess


@dataclass
class DTS:
    """Diffusion Tree Sampling (``greedy=False``) or Search (``greedy=True``, DTS*).

    Args:
        reward: ``r(x0) -> (B,)`` (e.g. :class:`~decoding.control.rewards.ClassifierReward`).
        rollouts: rollouts per tree and per :meth:`grow` call (each costs at most ``steps`` NFE;
            descending through existing nodes is free).
        lam: inverse temperature of the target ``p(x) exp(lam r(x))`` (``> 0``).
        greedy: DTS*: descend to the best child, return the best leaf.
        max_children: the most children per node.
        parallel: rollouts of one tree run side by side in a pass (1 = strictly sequential DTS:
            every rollout sees the values of all earlier ones).
        batch_size: rows per decode call (default: every tree's ``parallel`` rollouts at once).
        tree: the forest (created by the first :meth:`grow`; give one to continue it).
    """

    reward: Reward
    rollouts: int = 32
    lam: float = 1.0
    greedy: bool = False
    max_children: int = 4
    parallel: int = 1
    batch_size: int | None = None
    tree: DiffusionTree | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.reward):
            raise ValueError(f"reward must be a callable r(x0) -> (B,), got {type(self.reward).__name__}")
        for name in ("rollouts", "max_children", "parallel"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"DTS {name} must be a whole number >= 1, got {v!r}")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"DTS batch_size must be a whole number >= 1, got {self.batch_size!r}")
        if not (self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(f"DTS lam must be > 0 and finite, got {self.lam}")

    def spec(self) -> str:
        name = "dts*" if self.greedy else "dts"
        reward = getattr(self.reward, "spec", None)
        extra = f",reward={reward()}" if callable(reward) else ""
        return f"{name}:rollouts={self.rollouts},lam={self.lam:g},children={self.max_children}{extra}"

    def _tree(self, shape: tuple[int, ...], steps: int, device: torch.device, meta: dict[str, Any]) -> DiffusionTree:
        meta = {**meta, "lam": self.lam, "max_children": self.max_children, "shape": list(shape), "steps": steps}
        if self.tree is None:
            self.tree = DiffusionTree(shape, steps, self.lam, self.max_children, device=device, meta=meta)
            return self.tree
        old = self.tree.meta
        bad = sorted(k for k in meta if k in old and old[k] != meta[k])
        if bad:
            diffs = "; ".join(f"{k}: tree {old[k]!r}, now {meta[k]!r}" for k in bad)
            raise ValueError(f"this DTS tree was grown with other settings ({diffs}); use a new DTS object for these")
        return self.tree

    def grow(
        self, model: Model, process: ContinuousProcess, shape: tuple[int, ...], steps: int, trees: int,
        generator: torch.Generator, cond: Any = None, progress: bool = False, meta: dict[str, Any] | None = None,
    ) -> Tensor:
        """Run ``rollouts`` rollouts in each of the first ``trees`` trees (created as needed).

        Args:
            model: the sampler's model (a guidance wrapper is fine).
            process: the continuous process (stochastic, history-free solver).
            shape: one sample's shape, e.g. ``(1, 28, 28)``.
            steps: denoising steps per rollout (the tree's depth).
            trees: number of trees (one per requested sample).
            generator: the random source (noise and descent), on the model's device.
            cond: conditioning: None, one value for all, or a ``(trees,)`` tensor (one per tree).
            meta: settings stored in the tree and checked on later calls (model, solver, ...).

        Returns:
            ``(trees,)`` model evaluations spent on each tree by this call.
        """
        grid = process.schedule(steps)
        info = {**(meta or {}), "grid": [round(float(t), 9) for t in grid], "schedule": process.noise_schedule.key}
        tree = self._tree(tuple(int(s) for s in shape), steps, generator.device, info)
        if trees > tree.num_trees:
            tree.add_roots(trees - tree.num_trees)
        roots = tree.roots[:trees]
        before = tree.nfe[:trees].clone()
        proc = TreeProcess(process, tree, self.greedy)
        wrapped = TreeModel(model)
        per_tree = [min(self.parallel, self.rollouts - p) for p in range(0, self.rollouts, self.parallel)]
        bs = self.batch_size or trees * self.parallel
        passes = [(k, lo) for k in per_tree for lo in range(0, trees, max(1, bs // k))]
        for k, lo in tqdm(passes, disable=not progress, desc="DTS rollouts", leave=False):
            idx = torch.arange(lo, min(trees, lo + max(1, bs // k))).repeat_interleave(k)
            self._pass(wrapped, proc, roots[idx], idx, steps, generator, cond)
        return tree.nfe[:trees] - before

    def _pass(self, model: Model, proc: TreeProcess, roots: Tensor, tree_idx: Tensor, steps: int,
              generator: torch.Generator, cond: Any) -> None:
        tree = proc.tree
        row_cond = cond
        if isinstance(cond, Tensor) and cond.dim() and cond.shape[0] > 1:
            row_cond = cond.index_select(0, tree_idx.to(cond.device))
        res = decode(model, proc, roots, steps=steps, generator=generator, cond=row_cond)
        leaves = res.state.memory[KEY]["node"]
        rewards = tree.reward[leaves].clone()
        new = torch.isnan(rewards).nonzero().flatten()
        if new.numel():
            rewards[new] = call_reward(self.reward, res.x.index_select(0, new.to(res.x.device)))
        tree.backup(leaves, rewards)
        tree.nfe.index_add_(0, tree_idx, res.nfe.to(torch.float64))

    def draw(self, trees: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One sample per tree for the first ``trees`` trees: ``(x (trees, *shape), leaf ids (trees,))``."""
        if self.tree is None or self.tree.num_trees < trees:
            have = 0 if self.tree is None else self.tree.num_trees
            raise ValueError(f"asked for samples of {trees} trees but {have} were grown: call grow() first")
        roots = self.tree.roots[:trees]
        leaves = self.tree.best_leaf(roots) if self.greedy else self.tree.sample(roots, generator)
        return self.tree.x.index_select(0, leaves.to(self.tree.x.device)), leaves

    def save(self, path: str | Path) -> Path:
        """Save the trees (safetensors); :meth:`load` continues them."""
        if self.tree is None:
            raise ValueError("nothing to save: the DTS object has not grown a tree yet")
        return self.tree.save(path)

    def load(self, path: str | Path, device: str | torch.device = "cpu") -> DTS:
        """Continue the trees saved at ``path`` (their lam and max_children must be this object's)."""
        tree = DiffusionTree.load(path, device)
        if tree.lam != self.lam or tree.max_children != self.max_children:
            raise ValueError(
                f"{path} holds trees grown with lam={tree.lam:g}, max_children={tree.max_children}; "
                f"this DTS has lam={self.lam:g}, max_children={self.max_children}"
            )
        self.tree = tree
        return self
