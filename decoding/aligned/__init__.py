"""Grammar-aligned decoding: ASAp (adaptive sampling with approximate expected futures).

Park, Wang, Berg-Kirkpatrick, Polikarpova, D'Antoni, "Grammar-Aligned Decoding", arXiv 2405.21047.
Constrained decoding keeps samples grammatical but distorts the model's distribution; ASAp learns,
across samples, an over-approximation of each prefix's expected future grammaticality and
reweights the constrained next-token distribution with it, converging to the model's
distribution conditioned on the grammar.
"""

from decoding.aligned.asap import ASAp
from decoding.aligned.constraint import AlignedConstraint
from decoding.aligned.exact import (
    LanguageDistributions,
    distributions,
    empirical,
    enumerate_language,
    kl_divergence,
)
from decoding.aligned.finite import FiniteConstraint, FiniteLanguage
from decoding.aligned.sample import AlignedResult, AlignedRun, generate_aligned, sample_aligned
from decoding.aligned.store import FORMAT, VERSION, load_trie, save_trie
from decoding.aligned.trie import Node, PrefixTrie

__all__ = [
    "FORMAT",
    "VERSION",
    "ASAp",
    "AlignedResult",
    "AlignedRun",
    "AlignedConstraint",
    "FiniteConstraint",
    "FiniteLanguage",
    "LanguageDistributions",
    "Node",
    "PrefixTrie",
    "distributions",
    "empirical",
    "enumerate_language",
    "generate_aligned",
    "kl_divergence",
    "load_trie",
    "sample_aligned",
    "save_trie",
]
