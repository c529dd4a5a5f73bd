"""Is a sampler exact? Compare nucleus and typical sampling with the exact distribution they should give.

A Markov chain's distribution over short sequences is known in closed form, so the KL divergence
between the samples and the processed chain can be measured; an exact sampler reaches the
"floor" (the KL that N exact draws show by chance). The suite is written inline.

    python examples/eval_exact_kl.py --samples 5000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from decoding.evals.runner import run_suite
from decoding.evals.suite import parse_suite

SUITE = """
name = "exact-kl"
[[task]]
name = "truncations"
model = "markov"
decoder = "autoregressive"
samples = {samples}
batch = 1000
metrics = ["kl_exact", "distinct_n"]
model_args = {{ alphabet = "abcd$", seed = 3 }}
settings = {{ max_new_tokens = 4 }}
configs = [{{ top_p = 0.8 }}, {{ typical = 0.8 }}, {{ temperature = 0.7, top_k = 2 }}]
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=20000)
    args = p.parse_args()
    suite = parse_suite(SUITE.format(samples=args.samples), name="exact-kl")
    with tempfile.TemporaryDirectory() as out:
        summary = run_suite(suite, Path(out), progress=False, report=False)
    for c in summary["tasks"][0]["configs"]:
        verdict = "exact" if c["kl"] < 2 * c["kl_floor"] else "NOT exact"
        print(f"{c['label']:<28} KL {c['kl']:.5f}  floor {c['kl_floor']:.5f}  TV {c['tv']:.4f}  -> {verdict}")


if __name__ == "__main__":
    main()
