"""How :func:`decoding.generate` reaches inference-time control: ``guidance=[DTS(...)]``, ``[Steer(...)]``, ...

- Steering objects (:class:`~decoding.control.steer.Steer`, :class:`~decoding.control.dps.DPS`,
  :class:`~decoding.control.replace.Replace`) wrap the (guided) model, in the order given.
- A :class:`~decoding.control.dts.DTS` object turns the call into tree search: ``n`` trees (one per
  image), ``rollouts`` rollouts each through the one decode loop, then one sample per tree. The
  object keeps its trees, so the next call with it continues them.

Text form (``--guidance`` on the command line): ``dts:ROLLOUTS,class=Y[,lam=L][,children=K][,greedy=1]``
(the reward is the shipped classifier's ``log p(Y | x)``; ``dts*:...`` is the greedy search).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from decoding.control.dps import DPS
from decoding.control.dts import DTS
from decoding.control.replace import Replace
from decoding.control.rewards import ClassifierReward
from decoding.control.steer import Steer
from decoding.core.protocols import Model
from decoding.core.types import new_generator

WRAPPERS = (Steer, DPS, Replace)
CONTROL_TYPES = (*WRAPPERS, DTS)
FORMS = "dts:ROLLOUTS,class=Y[,lam=L][,children=K] (dts*: the greedy search)"


def is_control(spec: Any) -> bool:
    return isinstance(spec, CONTROL_TYPES)


def parse_control(text: str) -> DTS | None:
    """The DTS object of a text form, or None when ``text`` is not one (see the module docstring)."""
    head, *opts = text.split(",")
    name, _, arg = head.partition(":")
    if name not in ("dts", "dts*"):
        return None
    try:
        kw = dict(o.split("=", 1) for o in opts)
        unknown = set(kw) - {"class", "lam", "children", "greedy"}
        if unknown or "class" not in kw:
            raise ValueError(f"options are class= (required), lam=, children=; got {sorted(kw)}")
        greedy = name == "dts*" or kw.get("greedy", "0") not in ("0", "false", "no")
        return DTS(ClassifierReward(int(kw["class"])), rollouts=int(arg), lam=float(kw.get("lam", 1.0)),
                   max_children=int(kw.get("children", 4)), greedy=greedy)
    except ValueError as e:
        raise ValueError(f"guidance {text!r}: {e}; write {FORMS}") from None


def needs_stochastic_solver(specs: Sequence[Any]) -> bool:
    """DTS grows its tree from the sampler's random transitions (default solver then: ddpm)."""
    return any(isinstance(g, DTS) for g in specs)


def wrap_control(model: Model, specs: Sequence[Any], n: int, batch_size: int | None) -> Model:
    """``model`` wrapped by the steering objects among ``specs`` (in order); checks the observations' batch."""
    wrappers = [g for g in specs if isinstance(g, WRAPPERS)]
    if sum(isinstance(g, DTS) for g in specs) > 1:
        raise ValueError("give one DTS object per call")
    for w in wrappers:
        for c in w.conditions:
            rows = int(getattr(c, "y", torch.zeros(1)).shape[0])
            if rows not in (1, n):
                raise ValueError(f"{c.spec()}: the observation has {rows} images; give 1 (for all) or n={n}")
            if rows > 1 and batch_size is not None and batch_size < n:
                raise ValueError("one observation per image needs all images in one batch: leave batch_size unset")
    for w in wrappers:
        model = w.wrap(model)
    return model


def generate_search(
    handle: Any, model: Model, process: Any, dts: DTS, *, n: int, steps: int, labels: torch.Tensor,
    seed: int | None, progress: bool, settings: dict[str, Any], unused: dict[str, Any] | None = None,
) -> Any:
    """``n`` images by tree search: ``dts.rollouts`` more rollouts in each of ``n`` trees, one sample per tree.

    ``unused``: options of ``generate`` that tree search does not take (an error when given).
    """
    from decoding.api.generation import Generation

    for k, v in (unused or {}).items():
        if v is not None:
            raise ValueError(f"option {k!r} does not apply to DTS (set DTS(batch_size=...) for its rows per pass)")
    dev = handle.model.device
    cfg = handle.model.net.cfg
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    generator = new_generator(seed, dev)
    meta = {"model": handle.name, "labels": labels.tolist(), "solver": settings["solver"], "spacing": settings["spacing"],
            "guidance": [s for s in settings["guidance"] if not s.startswith(("dts", "dts*"))]}
    start = time.perf_counter()
    nfe = dts.grow(model, process, shape, steps, trees=n, generator=generator, cond=labels.to(dev),
                   progress=progress, meta=meta)
    x, leaves = dts.draw(n, generator)
    tree = dts.tree
    info = {"reward": tree.reward[leaves].tolist(), "tree_nodes": [int((tree.root[: len(tree)] == r).sum()) for r in tree.roots[:n].tolist()]}
    return Generation(
        kind=handle.kind, model=handle.name, images=x.float().cpu().clamp(-1, 1), labels=labels, nfe=nfe.tolist(),
        finish_reason=["complete"] * n, seconds=time.perf_counter() - start,
        settings={**settings, "rollouts_total": int(tree.visits[tree.roots[:n]].sum())}, info=info,
    )
