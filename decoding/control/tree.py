"""The search tree of Diffusion Tree Sampling (Jain et al., arXiv 2506.20701): nodes, soft values, descent.

A forest of denoising trees over one time grid of ``N`` steps. Depth 0 is a dummy root per tree
(the paper's ``x_{T+1}``), depth ``d`` in ``1..N+1`` holds a state ``x`` at grid index ``d - 1``
(depth 1: the starting noise ``x_T``, depth ``N + 1``: the sample ``x_0``, a leaf). A node's
children are independent draws of the sampler's stochastic transition from the node's state.

Soft values (the paper's soft Bellman backup): a leaf's value is its reward ``r(x_0)``; an inner
node's is the log-mean-exp of its (valued) children's values,

    v(n) = (1 / lam) * log( (1 / |C(n)|) * sum_{c in C(n)} exp(lam * v(c)) ),

a Monte-Carlo estimate of ``V(x_t) = (1 / lam) log E[exp(lam r(x_0)) | x_t]``. Descending by
``P(c | n) = exp(lam v(c)) / sum_c' exp(lam v(c'))`` (DTS) telescopes along a path to

    P(leaf) = exp(lam r(leaf)) / (exp(lam v(root)) * prod_{n on the path} |C(n)|),

the target ``p(x) exp(lam r(x))`` importance-weighted over the tree's empirical measure of the
sampler (weight ``1 / prod |C|`` per leaf), which converges to the target as the tree grows.
:meth:`DiffusionTree.probabilities` computes these probabilities exactly; the greedy descent
(argmax of ``v``) is the search variant DTS*.

Bookkeeping lives on the CPU (parents, children, values, visits); the states ``x`` live on the
sampler's device. The forest is saved and loaded with safetensors (:meth:`save`, :meth:`load`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from decoding.io import atomic_path

FORMAT = "decoding-dts-tree"
_INDEX_FIELDS = ("parent", "depth", "root", "n_children", "children", "visits")
_FLOAT_FIELDS = ("value", "reward")


def group_rank(keys: Tensor) -> Tensor:
    """``(B,)`` position of each entry among the earlier entries with the same key (0, 1, 2, ... per key)."""
    if keys.numel() == 0:
        return keys.new_zeros(0)
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    start = torch.ones_like(sorted_keys, dtype=torch.bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    pos = torch.arange(keys.numel())
    first = torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), 0).values
    rank = torch.empty_like(keys)
    rank[order] = pos - first
    return rank


class DiffusionTree:
    """A forest of denoising trees (see the module docstring).

    Args:
        shape: the shape of one state, e.g. ``(1, 28, 28)``.
        steps: ``N``, the number of denoising steps of the grid the trees are grown on.
        lam: the inverse temperature ``lam > 0`` of the target ``p(x) exp(lam r(x))``.
        max_children: the most children a node may have (the per-depth limit can be lowered with
            :meth:`set_width`, e.g. to 1 where the transition is deterministic).
        device, dtype: where and how the states are stored.
        meta: JSON-able settings the trees were grown with (checked when a tree is reused).
    """

    def __init__(
        self, shape: tuple[int, ...], steps: int, lam: float, max_children: int = 4,
        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, meta: dict[str, Any] | None = None,
    ) -> None:
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
        if not (lam > 0 and math.isfinite(lam)):
            raise ValueError(f"lam (the target's inverse temperature) must be > 0 and finite, got {lam}")
        if not (isinstance(max_children, int) and max_children >= 1):
            raise ValueError(f"max_children must be a whole number >= 1, got {max_children!r}")
        self.shape = tuple(int(s) for s in shape)
        self.steps, self.lam, self.max_children = steps, float(lam), max_children
        self.meta: dict[str, Any] = dict(meta or {})
        self.width = torch.full((steps + 2,), max_children, dtype=torch.long)
        self.width[-1] = 0  # leaves (x_0) have no children
        self.size = 0
        cap = 64
        self.parent = torch.full((cap,), -1, dtype=torch.long)
        self.depth = torch.zeros(cap, dtype=torch.long)
        self.root = torch.zeros(cap, dtype=torch.long)
        self.n_children = torch.zeros(cap, dtype=torch.long)
        self.children = torch.full((cap, max_children), -1, dtype=torch.long)
        self.visits = torch.zeros(cap, dtype=torch.long)
        self.value = torch.full((cap,), math.nan, dtype=torch.float64)
        self.reward = torch.full((cap,), math.nan, dtype=torch.float64)
        self.x = torch.zeros((cap, *self.shape), dtype=dtype, device=device)
        self.roots = torch.zeros(0, dtype=torch.long)
        self.nfe = torch.zeros(0, dtype=torch.float64)  # model evaluations spent per tree

    # ---- growth -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    @property
    def num_trees(self) -> int:
        return int(self.roots.numel())

    @property
    def leaf_depth(self) -> int:
        return self.steps + 1

    def set_width(self, depth: int, width: int) -> None:
        """At most ``width`` (<= ``max_children``) children for nodes at ``depth``."""
        if not 0 <= width <= self.max_children:
            raise ValueError(f"width must lie in [0, {self.max_children}], got {width}")
        self.width[depth] = width

    def _reserve(self, k: int) -> Tensor:
        need = self.size + k
        cap = self.parent.numel()
        if need > cap:
            new = max(need, 2 * cap)

            def grow(t: Tensor, fill: float) -> Tensor:
                extra = torch.full((new - cap, *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
                return torch.cat([t, extra])

            self.parent, self.depth, self.root = grow(self.parent, -1), grow(self.depth, 0), grow(self.root, 0)
            self.n_children, self.children = grow(self.n_children, 0), grow(self.children, -1)
            self.visits = grow(self.visits, 0)
            self.value, self.reward = grow(self.value, math.nan), grow(self.reward, math.nan)
            self.x = grow(self.x, 0.0)
        ids = torch.arange(self.size, need, dtype=torch.long)
        self.size = need
        return ids

    def add_roots(self, k: int) -> Tensor:
        """Start ``k`` new trees; returns their root ids ``(k,)``."""
        ids = self._reserve(k)
        self.depth[ids] = 0
        self.root[ids] = ids
        self.roots = torch.cat([self.roots, ids])
        self.nfe = torch.cat([self.nfe, torch.zeros(k, dtype=torch.float64)])
        return ids

    def free_slots(self, nodes: Tensor) -> Tensor:
        """``(B,)`` how many more children each node may get."""
        return self.width[self.depth[nodes]] - self.n_children[nodes]

    def add_children(self, parents: Tensor, x: Tensor) -> Tensor:
        """Append one child per entry of ``parents`` ``(B,)`` with states ``x`` ``(B, *shape)``; returns their ids."""
        parents = parents.long().cpu()
        if x.shape != (parents.numel(), *self.shape):
            raise ValueError(f"need states of shape {(parents.numel(), *self.shape)}, got {tuple(x.shape)}")
        slot = self.n_children[parents] + group_rank(parents)
        if bool((slot >= self.width[self.depth[parents]]).any()):
            raise ValueError("a node would get more children than its depth allows (check free_slots first)")
        ids = self._reserve(parents.numel())
        self.parent[ids] = parents
        self.depth[ids] = self.depth[parents] + 1
        self.root[ids] = self.root[parents]
        self.children[parents, slot] = ids
        self.n_children.index_add_(0, parents, torch.ones_like(parents))
        self.x[ids.to(self.x.device)] = x.to(self.x.dtype)
        return ids

    # ---- values -------------------------------------------------------------------------------
    def _child_values(self, nodes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Children ids ``(B, K)``, their values and a mask of the children that have a value."""
        ch = self.children[nodes]
        v = self.value[ch.clamp_min(0)]
        ok = (ch >= 0) & ~torch.isnan(v)
        return ch, v, ok

    def n_valued(self, nodes: Tensor) -> Tensor:
        """``(B,)`` number of children with a value (rollouts below them have finished)."""
        return self._child_values(nodes)[2].sum(1)

    def backup(self, leaves: Tensor, rewards: Tensor) -> None:
        """Give ``leaves`` ``(B,)`` their ``rewards`` ``(B,)`` and update the soft values of their ancestors.

        Every ancestor is recomputed from all its valued children (log-mean-exp, module
        docstring); the visit counts along each path go up by one per entry of ``leaves``.
        """
        leaves = leaves.long().cpu()
        rewards = torch.as_tensor(rewards, dtype=torch.float64).cpu().reshape(-1)
        if rewards.shape != leaves.shape:
            raise ValueError(f"need one reward per leaf ({leaves.numel()}), got {rewards.numel()}")
        if bool((self.depth[leaves] != self.leaf_depth).any()):
            raise ValueError(f"rewards belong to leaves (depth {self.leaf_depth}, the data x_0)")
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError("rewards must be finite")
        self.reward[leaves] = rewards
        self.value[leaves] = rewards
        cur = leaves
        while cur.numel():
            self.visits.index_add_(0, cur, torch.ones_like(cur))
            cur = self.parent[cur]
            cur = cur[cur >= 0]
        cur = torch.unique(leaves)
        for _ in range(self.leaf_depth):
            par = torch.unique(self.parent[cur])
            par = par[par >= 0]
            if par.numel() == 0:
                break
            _, v, ok = self._child_values(par)
            lv = torch.where(ok, self.lam * v, torch.full_like(v, -math.inf))
            self.value[par] = (torch.logsumexp(lv, 1) - torch.log(ok.sum(1).to(torch.float64))) / self.lam
            cur = par

    # ---- descent ------------------------------------------------------------------------------
    def select(self, nodes: Tensor, generator: torch.Generator | None = None, greedy: bool = False) -> Tensor:
        """One child per node ``(B,)``: drawn with ``P(c) ∝ exp(lam v(c))`` (DTS) or the argmax (DTS*, ties: first).

        Only valued children are candidates; every node must have one. The Boltzmann draw is the
        Gumbel-max trick on uniforms from ``generator`` (drawn on its device).
        """
        nodes = nodes.long().cpu()
        ch, v, ok = self._child_values(nodes)
        if bool((~ok.any(1)).any()):
            raise ValueError("select() needs nodes with at least one valued child")
        logits = torch.where(ok, self.lam * v, torch.full_like(v, -math.inf))
        if not greedy:
            dev = generator.device if generator is not None else torch.device("cpu")
            u = torch.rand(logits.shape, generator=generator, device=dev, dtype=torch.float64).cpu()
            logits = logits - torch.log(-torch.log(u.clamp_min(1e-300)))
        return ch.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)

    def sample(self, roots: Tensor, generator: torch.Generator | None = None, greedy: bool = False) -> Tensor:
        """Leaves reached by descending from ``roots`` ``(B,)`` (node ids) with :meth:`select`: ``(B,)`` ids."""
        cur = roots.long().cpu()
        for _ in range(self.leaf_depth):
            if bool((self.n_valued(cur) == 0).any()):
                raise ValueError("the tree has no finished rollout below a root: grow it before sampling")
            cur = self.select(cur, generator, greedy)
        return cur

    def probabilities(self) -> Tensor:
        """``(M,)`` exact probability of each node under the Boltzmann descent from its root (roots: 1).

        Uses ``P(c | n) = exp(lam (v(c) - v(n))) / n_valued(n)``; unvalued nodes get 0. The leaves of
        one tree sum to 1.
        """
        m = self.size
        prob = torch.zeros(m, dtype=torch.float64)
        prob[self.roots] = 1.0
        counts = self.n_valued(torch.arange(m)).to(torch.float64)
        for d in range(1, self.leaf_depth + 1):
            nodes = (self.depth[:m] == d).nonzero().flatten()
            par = self.parent[nodes]
            ok = ~torch.isnan(self.value[nodes])
            step = torch.exp(self.lam * (self.value[nodes] - self.value[par])) / counts[par]
            prob[nodes] = torch.where(ok, prob[par] * step, torch.zeros_like(step))
        return prob

    def leaves_of(self, root: int) -> Tensor:
        """Ids of the valued leaves of the tree whose root is node ``root``."""
        m = self.size
        mask = (self.root[:m] == root) & (self.depth[:m] == self.leaf_depth) & ~torch.isnan(self.reward[:m])
        return mask.nonzero().flatten()

    def best_leaf(self, roots: Tensor) -> Tensor:
        """The highest-reward leaf below each root ``(B,)`` (the output of DTS*)."""
        out = []
        for r in roots.long().cpu().tolist():
            leaves = self.leaves_of(r)
            if leaves.numel() == 0:
                raise ValueError("the tree has no finished rollout below a root: grow it before sampling")
            out.append(leaves[self.reward[leaves].argmax()])
        return torch.stack(out) if out else torch.zeros(0, dtype=torch.long)

    # ---- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the forest to a safetensors file (atomically); returns the path."""
        m = self.size
        tensors = {k: getattr(self, k)[:m].contiguous() for k in _INDEX_FIELDS + _FLOAT_FIELDS}
        tensors.update(x=self.x[:m].detach().cpu().contiguous(), roots=self.roots.clone(), nfe=self.nfe.clone(),
                       width=self.width.clone())
        header = {"shape": list(self.shape), "steps": self.steps, "lam": self.lam,
                  "max_children": self.max_children, "meta": self.meta}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "tree": json.dumps(header)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> DiffusionTree:
        """Read a forest written by :meth:`save` (states moved to ``device``)."""
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a DTS tree file (format {meta.get('format')!r}, expected {FORMAT!r})")
        header = json.loads(meta["tree"])
        t = load_file(str(path))
        tree = cls(tuple(header["shape"]), int(header["steps"]), float(header["lam"]), int(header["max_children"]),
                   device=device, dtype=t["x"].dtype, meta=header["meta"])
        m = int(t["parent"].numel())
        tree._reserve(m)
        for k in _INDEX_FIELDS + _FLOAT_FIELDS:
            getattr(tree, k)[:m] = t[k]
        tree.x[:m] = t["x"].to(device)
        tree.roots, tree.nfe, tree.width = t["roots"], t["nfe"], t["width"]
        return tree
