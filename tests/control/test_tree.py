"""The DTS tree: soft-value backup arithmetic, exact descent probabilities, Boltzmann / greedy selection, files."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from decoding.control.tree import DiffusionTree, group_rank


def lme(values: list[float], lam: float) -> float:
    """(1 / lam) log mean exp(lam v), written out."""
    return math.log(sum(math.exp(lam * v) for v in values) / len(values)) / lam


def small_tree(lam: float = 0.7) -> tuple[DiffusionTree, dict[str, int]]:
    """One root, steps=2: root -> a, b (x_T) ; a -> a1, a2 ; b -> b1 ; each -> one leaf (deterministic last step)."""
    t = DiffusionTree((2,), steps=2, lam=lam, max_children=3)
    t.set_width(2, 1)
    (root,) = t.add_roots(1).tolist()
    a, b = t.add_children(torch.tensor([root, root]), torch.randn(2, 2)).tolist()
    a1, a2, b1 = t.add_children(torch.tensor([a, a, b]), torch.randn(3, 2)).tolist()
    la1, la2, lb1 = t.add_children(torch.tensor([a1, a2, b1]), torch.randn(3, 2)).tolist()
    return t, {"root": root, "a": a, "b": b, "a1": a1, "a2": a2, "b1": b1, "la1": la1, "la2": la2, "lb1": lb1}


def test_group_rank_counts_earlier_equal_keys() -> None:
    assert group_rank(torch.tensor([5, 3, 5, 5, 3, 9])).tolist() == [0, 0, 1, 2, 1, 0]
    assert group_rank(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_backup_is_the_log_mean_exp_of_the_children() -> None:
    lam = 0.7
    t, n = small_tree(lam)
    t.backup(torch.tensor([n["la1"], n["lb1"]]), torch.tensor([1.0, -2.0]))
    assert math.isnan(float(t.value[n["a2"]]))  # no rollout below a2 yet
    assert float(t.value[n["a"]]) == pytest.approx(1.0)  # the valued children only
    assert float(t.value[n["root"]]) == pytest.approx(lme([1.0, -2.0], lam))
    t.backup(torch.tensor([n["la2"]]), torch.tensor([3.0]))
    assert float(t.value[n["a1"]]) == pytest.approx(1.0) and float(t.value[n["a2"]]) == pytest.approx(3.0)
    va = lme([1.0, 3.0], lam)
    assert float(t.value[n["a"]]) == pytest.approx(va)
    assert float(t.value[n["root"]]) == pytest.approx(lme([va, -2.0], lam))
    assert t.visits[n["root"]] == 3 and t.visits[n["a"]] == 2 and t.visits[n["b"]] == 1


def test_descent_probabilities_telescope_to_the_tilted_leaf_weights() -> None:
    """P(leaf) = exp(lam r) / (exp(lam v(root)) prod |C|) and the leaves of a tree sum to one."""
    lam = 0.7
    t, n = small_tree(lam)
    r = {"la1": 1.0, "la2": 3.0, "lb1": -2.0}
    t.backup(torch.tensor([n[k] for k in r]), torch.tensor(list(r.values())))
    p = t.probabilities()
    z = math.exp(lam * float(t.value[n["root"]]))
    branching = {"la1": 2 * 2, "la2": 2 * 2, "lb1": 2 * 1}
    for k, v in r.items():
        assert float(p[n[k]]) == pytest.approx(math.exp(lam * v) / (z * branching[k]))
    assert float(sum(p[n[k]] for k in r)) == pytest.approx(1.0)


def test_boltzmann_selection_draws_children_by_exp_lam_v() -> None:
    lam = 0.7
    t, n = small_tree(lam)
    t.backup(torch.tensor([n["la1"], n["la2"], n["lb1"]]), torch.tensor([1.0, 3.0, -2.0]))
    draws = 20000
    picks = t.select(torch.full((draws,), n["root"]), torch.Generator().manual_seed(0))
    va, vb = float(t.value[n["a"]]), float(t.value[n["b"]])
    pa = math.exp(lam * va) / (math.exp(lam * va) + math.exp(lam * vb))
    counts = [int((picks == n["a"]).sum()), int((picks == n["b"]).sum())]
    assert sum(counts) == draws
    assert stats.chisquare(counts, [draws * pa, draws * (1 - pa)]).pvalue > 1e-3
    greedy = t.select(torch.tensor([n["root"], n["a"]]), greedy=True)
    assert greedy.tolist() == [n["a"] if va > vb else n["b"], n["a2"]]


def test_sampled_leaves_follow_the_exact_probabilities_and_dts_star_takes_the_best() -> None:
    t, n = small_tree(0.7)
    t.backup(torch.tensor([n["la1"], n["la2"], n["lb1"]]), torch.tensor([1.0, 3.0, -2.0]))
    draws = 20000
    leaves = t.sample(torch.full((draws,), n["root"]), torch.Generator().manual_seed(1))
    p = t.probabilities()
    keys = ["la1", "la2", "lb1"]
    counts = [int((leaves == n[k]).sum()) for k in keys]
    assert stats.chisquare(counts, [draws * float(p[n[k]]) for k in keys]).pvalue > 1e-3
    assert t.best_leaf(torch.tensor([n["root"]])).tolist() == [n["la2"]]


def test_width_limits_and_bad_input_raise_clear_errors() -> None:
    t, n = small_tree()
    assert t.free_slots(torch.tensor([n["root"], n["a1"], n["la1"]])).tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="more children"):
        t.add_children(torch.tensor([n["a1"]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="leaves"):
        t.backup(torch.tensor([n["a"]]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="finite"):
        t.backup(torch.tensor([n["la1"]]), torch.tensor([math.nan]))
    with pytest.raises(ValueError, match="valued child"):
        t.select(torch.tensor([n["root"]]))
    with pytest.raises(ValueError, match="lam"):
        DiffusionTree((1,), 2, lam=0.0)


def test_save_and_load_round_trip(tmp_path) -> None:  # noqa: ANN001
    t, n = small_tree()
    t.meta = {"model": "m", "grid": [1.0, 0.5, 0.0]}
    t.backup(torch.tensor([n["la1"], n["lb1"]]), torch.tensor([0.5, -1.0]))
    t.nfe += 7
    path = t.save(tmp_path / "tree.safetensors")
    u = DiffusionTree.load(path)
    assert len(u) == len(t) and u.meta == t.meta and u.lam == t.lam and u.steps == t.steps
    m = len(t)
    for k in ("parent", "depth", "root", "n_children", "children", "visits"):
        assert torch.equal(getattr(u, k)[:m], getattr(t, k)[:m]), k
    for k in ("roots", "nfe", "width"):
        assert torch.equal(getattr(u, k), getattr(t, k)), k
    assert torch.equal(u.x[:m], t.x[:m])
    assert torch.allclose(u.value[:m], t.value[:m], equal_nan=True)
    # the loaded tree keeps growing
    u.backup(torch.tensor([n["la2"]]), torch.tensor([2.0]))
    assert float(u.value[n["a"]]) == pytest.approx(lme([0.5, 2.0], t.lam))
    (tmp_path / "bad.safetensors").write_bytes(b"not a tree")
    with pytest.raises(Exception):  # noqa: B017 (safetensors raises its own error type)
        DiffusionTree.load(tmp_path / "bad.safetensors")
