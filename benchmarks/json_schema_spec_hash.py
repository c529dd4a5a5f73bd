"""Fingerprints of the compiled grammars of a JSON Schema sample, to check that a change of the
converter keeps its output: per schema, a hash of the ``GrammarSpec`` (terminals, rules, LALR table,
``repr`` with dict order) and a hash of every terminal's byte NFA fragment (renumbered from its start
in breadth-first order, edges and epsilon lists in order), or the refusal.

Run it on the code before and after a change and compare::

    PYTHONHASHSEED=0 python benchmarks/json_schema_spec_hash.py --suites jsb --limit 10 --out before.json
    PYTHONHASHSEED=0 python benchmarks/json_schema_spec_hash.py --suites jsb --limit 10 --out after.json --compare before.json

``PYTHONHASHSEED=0``: the ``\\u00XX`` escapes add their two hex-digit spellings from a set of
strings, so the order of those edges (not the language) follows the hash seed. Data and sampling
as in ``json_schema_suite.py`` (same ``--limit``/``--seed``: the same schemas).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json_schema_suite as suite  # noqa: E402


def spec_hash(spec: Any) -> str:
    """Hash of a ``GrammarSpec``'s terminals, ignore list, rules, start and table."""
    t = spec.table
    text = repr((spec.terminals, spec.ignore, spec.rules, spec.start, t.actions, t.start_state, t.end_state))
    return hashlib.sha256(text.encode()).hexdigest()


def nfa_hash(spec: Any) -> str:
    """Hash of each terminal's fragment of the shared byte NFA, states renumbered from its start."""
    from decoding.grammar.terminal_nfa import terminal_automata

    try:
        from decoding.grammar.regex_bytes import byte_edges
    except ImportError:  # code before commit d3ebd0d: one (lo, hi, dst) tuple per edge

        def byte_edges(edges: list) -> Any:  # type: ignore[misc]
            return iter(edges)

    nfa, states = terminal_automata([t.regex for t in spec.terminals])
    h = hashlib.sha256()
    for start, accept, width in states:
        num = {start: 0}
        order = [start]
        for q in order:  # grows while it is walked
            for d in [d for _, _, d in byte_edges(nfa.edges[q])] + list(nfa.eps[q]):
                if d not in num:
                    num[d] = len(order)
                    order.append(d)
        rows = [([(lo, hi, num[d]) for lo, hi, d in byte_edges(nfa.edges[q])], [num[d] for d in nfa.eps[q]]) for q in order]
        h.update(repr((rows, num.get(accept), width)).encode())
    return h.hexdigest()


def fingerprints(cases: list[tuple[str, Any]]) -> dict[str, str]:
    """``subset/name`` -> spec hash, ``subset/name nfa`` -> NFA hash (or ``ERR ...`` for a refusal)."""
    from decoding.grammar.json_schema.convert import json_schema_spec

    out: dict[str, str] = {}
    for label, case in cases:
        key = f"{label}/{case.name}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec = json_schema_spec(case.schema, draft=case.draft)
            except Exception as e:  # noqa: BLE001 - a refusal is part of the output
                out[key] = f"ERR {type(e).__name__}: {str(e)[:200]}"
                continue
        out[key] = spec_hash(spec)
        out[key + " nfa"] = nfa_hash(spec)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="as in json_schema_suite.py (or DECODING_JSON_SCHEMA_DATA)")
    ap.add_argument("--suites", default="jsb", help="testsuite, jsb or both")
    ap.add_argument("--limit", type=int, default=10, help="schemas per subset, sampled with --seed (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="write the fingerprints (JSON) here")
    ap.add_argument("--compare", help="fingerprints of another run: print the schemas that differ")
    args = ap.parse_args(argv)
    root = suite.data_dir(args.data)
    subsets: list[tuple[str, Any]] = []
    if "testsuite" in args.suites:
        subsets += [(d, lambda d=d: suite.test_suite_cases(root, d)) for d in suite.TEST_SUITE_DRAFTS]
    if "jsb" in args.suites:
        subsets += [(s, lambda s=s: suite.jsb_cases(root, s)) for s in suite.JSB_SUBSETS]
    cases: list[tuple[str, Any]] = []
    for label, load in subsets:
        cs = load()
        if args.limit and len(cs) > args.limit:
            cs = random.Random(args.seed).sample(cs, args.limit)
        cases += [(label, c) for c in cs]
    fp = fingerprints(cases)
    Path(args.out).write_text(json.dumps(fp, indent=1))
    specs = sum(1 for k, v in fp.items() if not k.endswith(" nfa") and not v.startswith("ERR"))
    print(f"{len(cases)} schemas: {specs} specs, {len(cases) - specs} refusals -> {args.out}")
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        diff = sorted(k for k in fp.keys() | other.keys() if fp.get(k) != other.get(k))
        print(f"{len(diff)} differ from {args.compare}" + "".join(f"\n  {k}" for k in diff[:50]))
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
