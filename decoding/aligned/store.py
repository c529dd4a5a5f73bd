"""Save and load an ASAp trie (arXiv 2405.21047) as a versioned safetensors file (never pickle).

File format ``decoding.aligned.trie`` version 1: flat arrays over the nodes in preorder
(a parent always comes before its children; children in insertion order, so sums are
recomputed in the same order after loading):

==============  =========  ====================================================
tensor          dtype      meaning
==============  =========  ====================================================
parent          int64      index of the parent node, -1 for a root
token           int64      token id leading to the node, -1 for a root
prob            float64    raw model probability of ``token`` after the parent
efg             float64    expected-future-grammaticality estimate
mass            float64    allowed next-token mass (NaN: not evaluated)
n_allowed       int64      number of allowed next tokens (-1: not evaluated)
terminal        bool       the node is an EOS
prompt_offsets  int64      ``(R + 1,)`` slices of ``prompt_tokens``, one per root
prompt_tokens   int64      the prompts of the ``R`` roots, concatenated
==============  =========  ====================================================

Metadata (strings): ``format``, ``version``, ``eos_token_ids`` (JSON list), ``signature``
(free text naming the model and grammar the trie belongs to) and ``samples`` (updates so far).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from decoding.aligned.trie import Node, PrefixTrie
from decoding.io import atomic_path

FORMAT = "decoding.aligned.trie"
VERSION = 1
_FIELDS = (
    "parent",
    "token",
    "prob",
    "efg",
    "mass",
    "n_allowed",
    "terminal",
    "prompt_offsets",
    "prompt_tokens",
)


@dataclass
class TrieFile:
    """What a trie file holds besides the trie."""

    trie: PrefixTrie
    eos_token_ids: tuple[int, ...]
    signature: str
    samples: int


def save_trie(path: str | os.PathLike[str], data: TrieFile) -> None:
    """Write ``data`` to ``path`` (atomically: a temporary file renamed over the target)."""
    parent, token, prob, efg, mass, n_allowed, terminal = [], [], [], [], [], [], []
    for p, node in data.trie.nodes():
        parent.append(p)
        token.append(node.token)
        prob.append(node.prob)
        efg.append(node.efg)
        mass.append(node.mass)
        n_allowed.append(node.n_allowed)
        terminal.append(node.terminal)
    offsets = [0]
    prompt_tokens: list[int] = []
    for prompt in data.trie.roots:
        prompt_tokens.extend(prompt)
        offsets.append(len(prompt_tokens))
    tensors = {
        "parent": torch.tensor(parent, dtype=torch.int64),
        "token": torch.tensor(token, dtype=torch.int64),
        "prob": torch.tensor(prob, dtype=torch.float64),
        "efg": torch.tensor(efg, dtype=torch.float64),
        "mass": torch.tensor(mass, dtype=torch.float64),
        "n_allowed": torch.tensor(n_allowed, dtype=torch.int64),
        "terminal": torch.tensor(terminal, dtype=torch.bool),
        "prompt_offsets": torch.tensor(offsets, dtype=torch.int64),
        "prompt_tokens": torch.tensor(prompt_tokens, dtype=torch.int64),
    }
    meta = {
        "format": FORMAT,
        "version": str(VERSION),
        "eos_token_ids": json.dumps(list(data.eos_token_ids)),
        "signature": data.signature,
        "samples": str(int(data.samples)),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_trie(path: str | os.PathLike[str]) -> TrieFile:
    """Read a file written by :func:`save_trie`; raises ValueError for another format or version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trie file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(
                    f"{path} is not an ASAp trie file (format {meta.get('format')!r}, expected {FORMAT!r})"
                )
            if meta.get("version") != str(VERSION):
                raise ValueError(
                    f"{path} has trie format version {meta.get('version')!r}; this version of decoding reads "
                    f"version {VERSION} only: delete the file or re-create it"
                )
            missing = [k for k in _FIELDS if k not in f.keys()]
            if missing:
                raise ValueError(f"{path} lacks the tensors {missing}; the file is damaged")
            t = {k: f.get_tensor(k).tolist() for k in _FIELDS}
    except ValueError:
        raise
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"cannot read the trie file {path}: {e}") from e
    n = len(t["parent"])
    if any(len(t[k]) != n for k in _FIELDS[:7]):
        raise ValueError(f"{path}: node arrays have different lengths; the file is damaged")
    offsets, prompt_tokens = t["prompt_offsets"], t["prompt_tokens"]
    prompts = [tuple(prompt_tokens[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    trie = PrefixTrie()
    nodes: list[Node] = []
    roots_seen = 0
    for i in range(n):
        p = t["parent"][i]
        if p < 0:
            if roots_seen >= len(prompts):
                raise ValueError(f"{path}: more roots than prompts; the file is damaged")
            node = Node()
            trie.roots[prompts[roots_seen]] = node
            roots_seen += 1
        else:
            if p >= i:
                raise ValueError(f"{path}: node {i} has parent {p} after it; the file is damaged")
            node = Node(int(t["token"][i]), float(t["prob"][i]), bool(t["terminal"][i]))
            nodes[p].children[node.token] = node
        node.efg = float(t["efg"][i])
        node.mass = float(t["mass"][i])
        node.n_allowed = int(t["n_allowed"][i])
        nodes.append(node)
    if roots_seen != len(prompts):
        raise ValueError(f"{path}: {len(prompts)} prompts but {roots_seen} roots; the file is damaged")
    return TrieFile(
        trie=trie,
        eos_token_ids=tuple(json.loads(meta["eos_token_ids"])),
        signature=meta.get("signature", ""),
        samples=int(meta.get("samples", "0")),
    )
