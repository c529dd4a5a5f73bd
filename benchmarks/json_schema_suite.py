"""JSON Schema -> token constraint on the official test suite and JSONSchemaBench: ours vs llguidance vs xgrammar.

Every instance is serialised with ``json.dumps(ensure_ascii=False)``, tokenised with SmolLM2's
tokenizer, and fed token by token, then EOS, through each engine's token-level matcher. Per
subset it prints: coverage (schemas that compile and whose instances are all judged within
``--timeout``; for ours, how many of them were narrowed), false accepts (invalid instances
accepted), false rejects (valid instances rejected), compile time (median / p90 over compiled
schemas), compile plus first mask, and the ratio of our median compile time to each peer's, all
engines in the same run; ``--out`` keeps one record per schema and engine, ``--show`` lists ours.

The data is not in the repository. Put it in a folder (``--data DIR`` or the environment variable
``DECODING_JSON_SCHEMA_DATA``)::

    git clone --depth 1 https://github.com/json-schema-org/JSON-Schema-Test-Suite DIR/JSON-Schema-Test-Suite
    git clone --depth 1 https://github.com/guidance-ai/jsonschemabench DIR/jsonschemabench

Peers: ``pip install llguidance xgrammar`` (each is skipped with a note when not importable).

    python benchmarks/json_schema_suite.py --data DIR                    # everything (hours on 1 core)
    python benchmarks/json_schema_suite.py --data DIR --limit 10         # 10 schemas per subset
    python benchmarks/json_schema_suite.py --data DIR --suites testsuite --engines ours
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import statistics
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEST_SUITE_DRAFTS = {"draft2020-12": 2020, "draft7": 7}
JSB_SUBSETS = [
    "Github_trivial", "Github_easy", "Github_medium", "Github_hard", "Github_ultra",
    "Glaiveai2K", "JsonSchemaStore", "Kubernetes", "Snowplow", "WashingtonPost",
]  # fmt: skip
ENGINES = ["ours", "llguidance", "xgrammar"]


@dataclass
class Case:
    """One schema with labelled instances."""

    name: str
    schema: Any
    draft: int | None
    tests: list[tuple[Any, bool]]


@dataclass
class Tally:
    """Results of one engine on one subset (a schema whose matching times out counts as not compiled)."""

    schemas: int = 0
    compiled: int = 0
    valid: int = 0
    invalid: int = 0
    false_accepts: int = 0
    false_rejects: int = 0
    compile_s: list[float] = field(default_factory=list)
    first_mask_s: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    cases: list[dict] = field(default_factory=list)

    def add(self, rec: dict) -> None:
        """Count one schema's record (see :func:`run_case`)."""
        self.schemas += 1
        self.cases.append(rec)
        if rec["error"] is not None:
            self.failures[rec["error"]] += 1
            return
        self.compiled += 1
        self.compile_s.append(rec["compile_s"])
        self.first_mask_s.append(rec["first_mask_s"])
        self.valid += rec["valid"]
        self.invalid += rec["invalid"]
        self.false_accepts += len(rec["false_accepts"])
        self.false_rejects += len(rec["false_rejects"])

    def row(self) -> dict:
        cs, fm = sorted(self.compile_s), sorted(self.first_mask_s)
        return {
            "schemas": self.schemas,
            "compiled": self.compiled,
            "coverage": self.compiled / self.schemas if self.schemas else float("nan"),
            "valid": self.valid,
            "invalid": self.invalid,
            "false_accepts": self.false_accepts,
            "false_rejects": self.false_rejects,
            "compile_median_ms": 1e3 * statistics.median(cs) if cs else float("nan"),
            "compile_p90_ms": 1e3 * cs[int(0.9 * (len(cs) - 1))] if cs else float("nan"),
            "first_mask_median_ms": 1e3 * statistics.median(fm) if fm else float("nan"),
            "narrowed": sum(1 for c in self.cases if c["error"] is None and c.get("narrowed")),
            "failures": dict(self.failures.most_common(12)),
            "false_accept_cases": [c["name"] for c in self.cases if c["false_accepts"]],
            "cases": self.cases,
        }


# --- data -------------------------------------------------------------------------------------
def data_dir(arg: str | None) -> Path:
    d = Path(arg or os.environ.get("DECODING_JSON_SCHEMA_DATA", "")).expanduser()
    ok = (d / "JSON-Schema-Test-Suite" / "tests").is_dir() or (d / "jsonschemabench").is_dir()
    if not arg and not os.environ.get("DECODING_JSON_SCHEMA_DATA") or not ok:
        sys.exit(
            f"no benchmark data in {str(d) or '(unset)'}: pass --data DIR or set DECODING_JSON_SCHEMA_DATA, where DIR holds\n"
            "  git clone --depth 1 https://github.com/json-schema-org/JSON-Schema-Test-Suite DIR/JSON-Schema-Test-Suite\n"
            "  git clone --depth 1 https://github.com/guidance-ai/jsonschemabench DIR/jsonschemabench"
        )
    return d


def test_suite_cases(root: Path, draft_dir: str) -> list[Case]:
    """Every schema of the required (non-``optional``) tests of one draft."""
    folder = root / "JSON-Schema-Test-Suite" / "tests" / draft_dir
    if not folder.is_dir():
        sys.exit(f"missing {folder}: see the module docstring for how to get the data")
    out = []
    for f in sorted(folder.glob("*.json")):
        for k, group in enumerate(json.loads(f.read_text())):
            tests = [(t["data"], bool(t["valid"])) for t in group["tests"]]
            out.append(Case(f"{f.stem}#{k}", group["schema"], TEST_SUITE_DRAFTS[draft_dir], tests))
    return out


def jsb_cases(root: Path, subset: str) -> list[Case]:
    """JSONSchemaBench schemas of one subset with their labelled tests (MaskBench files)."""
    folder = root / "jsonschemabench" / "maskbench" / "data"
    if not folder.is_dir():
        sys.exit(f"missing {folder}: see the module docstring for how to get the data")
    out = []
    for f in sorted(folder.glob(f"{subset}---*.json")):
        d = json.loads(f.read_text())
        tests = [(t["data"], bool(t["valid"])) for t in d.get("tests", [])]
        out.append(Case(f.stem.split("---", 1)[1], d["schema"], None, tests))
    return out


# --- engines ----------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_stderr():
    """Silence native libraries' warnings on file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def short_error(err: Exception) -> str:
    """First line of an engine's error, without log prefixes (time stamps, source paths)."""
    line = str(err).strip().split("\n")[0]
    line = re.sub(r"^\[[0-9:]+\]\s*\S+:\d+:\s*", "", line)  # xgrammar: "[12:00:00] /path/file.cc:123: "
    return line[:70]


class Ours:
    name = "ours"
    cold = False  # --cold: empty the process-wide compile memos before every schema

    def __init__(self, tok: Any) -> None:
        from decoding.tokenizers import vocabulary

        self.vocab = vocabulary(tok)
        self.eos = self.vocab.eos_token_id

    def prepare(self) -> None:
        """With ``--cold``, forget every terminal automaton, lexer context and converter memo
        that earlier schemas built (:func:`~decoding.grammar.json_schema.caches.clear_compile_caches`)."""
        if self.cold:
            from decoding.grammar.json_schema.caches import clear_compile_caches

            clear_compile_caches()

    def compile(self, case: Case) -> Any:
        from decoding.grammar.json_schema import NarrowingWarning, compile_json_schema

        self.phases: dict[str, float] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NarrowingWarning)
            g = compile_json_schema(case.schema, self.vocab, draft=case.draft, warm_seconds=0, timings=self.phases)
        self.narrowed = any(issubclass(w.category, NarrowingWarning) for w in caught)
        return g

    def first_mask(self, g: Any) -> None:
        g.matcher().mask()

    def accepts(self, g: Any, ids: list[int]) -> bool:
        state = g.initial
        for t in ids:
            state = g.step_token(state, t)
            if state is None:
                return False
        return g.is_complete(state)

    @staticmethod
    def failure(err: Exception) -> str:
        kw = getattr(err, "keyword", None)
        if not kw:
            return f"{type(err).__name__}: {short_error(err)}"
        reason = re.sub(r"'[^']*'|\d+", "_", str(getattr(err, "reason", "")))  # group by kind, not by value
        return f"{kw}: {reason[:60]}"


class LLGuidance:
    name = "llguidance"

    def __init__(self, tok: Any) -> None:
        import llguidance
        import llguidance.hf

        self.llg = llguidance
        self.llt = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok))
        self.eos = tok.eos_token_id

    def compile(self, case: Case) -> Any:
        grammar = self.llg.LLMatcher.grammar_from_json_schema(json.dumps(case.schema))
        m = self.llg.LLMatcher(self.llt, grammar)
        if m.is_error():
            raise ValueError(m.get_error())
        return m

    def first_mask(self, m: Any) -> None:
        m.compute_bitmask()

    def accepts(self, m: Any, ids: list[int]) -> bool:
        m.reset()
        ok = all(m.consume_token(t) for t in ids)
        return ok and m.is_accepting() and m.consume_token(self.eos)

    @staticmethod
    def failure(err: Exception) -> str:
        return short_error(err)


class XGrammar:
    name = "xgrammar"

    def __init__(self, tok: Any) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.bitmask = xgr.allocate_token_bitmask(1, len(tok))
        self.eos = tok.eos_token_id

    def compile(self, case: Case) -> Any:
        with quiet_stderr():
            compiled = self.compiler.compile_json_schema(json.dumps(case.schema), strict_mode=False)
        return self.xgr.GrammarMatcher(compiled, terminate_without_stop_token=False)

    def first_mask(self, m: Any) -> None:
        m.fill_next_token_bitmask(self.bitmask)

    def accepts(self, m: Any, ids: list[int]) -> bool:
        m.reset()
        with quiet_stderr():
            ok = all(m.accept_token(t) for t in ids)
            return ok and m.accept_token(self.eos) and m.is_terminated()

    @staticmethod
    def failure(err: Exception) -> str:
        return short_error(err)


class Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise Timeout()


# --- running ----------------------------------------------------------------------------------
def encode_tests(case: Case, tok: Any, vocab: Any) -> list[tuple[int, list[int], bool]]:
    """``(index, token ids, valid)`` of each instance's ``json.dumps(ensure_ascii=False)`` (instances
    that cannot be spelled in UTF-8, e.g. lone surrogates, are left out)."""
    out = []
    for k, (inst, valid) in enumerate(case.tests):
        text = json.dumps(inst, ensure_ascii=False)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            continue
        ids = tok.encode(text, add_special_tokens=False)
        if b"".join(vocab.tokens[i] or b"" for i in ids) != data:
            continue
        out.append((k, ids, valid))
    return out


CLOCK = [time.perf_counter]  # --clock cpu: time.process_time (all threads of the process, not time spent descheduled)


def run_case(engine: Any, case: Case, tests: list, timeout: float) -> dict:
    """Compile (timed, then the first mask timed), feed every instance: one record.

    ``error`` is ``None`` when the schema compiled and every instance was judged in ``timeout``
    seconds, else the reason; ``false_accepts``/``false_rejects`` hold instance indices.
    """
    if hasattr(engine, "prepare"):
        engine.prepare()  # outside the timed part
    rec: dict[str, Any] = {"name": case.name, "error": None, "compile_s": None, "first_mask_s": None,
                           "valid": 0, "invalid": 0, "false_accepts": [], "false_rejects": []}  # fmt: skip
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        start = CLOCK[0]()
        try:
            handle = engine.compile(case)
            rec["compile_s"] = CLOCK[0]() - start
            rec["narrowed"] = getattr(engine, "narrowed", False)
            if hasattr(engine, "phases"):
                rec["phases_ms"] = {k: round(1e3 * v, 3) for k, v in engine.phases.items()}
            engine.first_mask(handle)
            rec["first_mask_s"] = CLOCK[0]() - start
        except Timeout:
            rec["error"] = "timeout"
            return rec
        except Exception as e:  # noqa: BLE001 - any engine error means "does not compile"
            rec["error"] = engine.failure(e)
            return rec
        for k, ids, valid in tests:
            ok = engine.accepts(handle, ids)
            rec["valid" if valid else "invalid"] += 1
            if ok != valid:
                rec["false_rejects" if valid else "false_accepts"].append(k)
    except Timeout:
        rec["error"] = "timeout while matching"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return rec


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and a == a and b == b else "-"


def markdown(results: dict[str, dict[str, dict]], engines: list[str]) -> str:
    """One row per subset: coverage, false accepts / rejects, compile and first-mask medians, ratios."""
    peers = [e for e in engines if e != "ours"]
    head = (
        ["subset", "schemas"] + [f"{e} compiles" for e in engines] + [f"{e} false acc / rej" for e in engines]
    )
    head += [f"{e} compile ms (med / p90)" for e in engines] + [f"{e} first mask ms (med)" for e in engines]
    if "ours" in engines:
        head += [f"compile med ours / {p}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for subset, per in results.items():
        first = next(iter(per.values()))
        cells = [subset, str(first["schemas"])]
        cells += [
            f"{per[e]['compiled']} ({100 * per[e]['coverage']:.1f}%"
            + (f", {per[e]['narrowed']} narrowed)" if e == "ours" else ")")
            for e in engines
        ]
        cells += [f"{per[e]['false_accepts']} / {per[e]['false_rejects']}" for e in engines]
        cells += [f"{per[e]['compile_median_ms']:.1f} / {per[e]['compile_p90_ms']:.1f}" for e in engines]
        cells += [f"{per[e]['first_mask_median_ms']:.1f}" for e in engines]
        if "ours" in engines:
            cells += [_ratio(per["ours"]["compile_median_ms"], per[p]["compile_median_ms"]) for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PHASES = ["schema", "rules", "bnf", "automata", "lalr", "matcher"]


def phase_table(results: dict[str, dict[str, dict]]) -> str:
    """Where our compile time goes, per subset: the steps of the schema with the median compile time.

    ``schema``: reading and normalising the schema; ``rules``: the converter's rules (objects,
    arrays, unions, key languages); ``bnf``: lark's repetition expansion; ``automata``: terminal
    NFAs not yet in the process-wide cache; ``lalr``: the LALR(1) table; ``matcher``: the compiled
    grammar around it (steps in CPU time of the compiling thread); ``other``: the rest of the
    compile time (with ``--clock wall``, also time the process was not running).
    """
    head = ["subset", "median schema", "compile ms", *PHASES, "other"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, per in results.items():
        cases = sorted(
            (c for c in per.get("ours", {}).get("cases", []) if c["error"] is None and "phases_ms" in c),
            key=lambda c: c["compile_s"],
        )
        if not cases:
            continue
        c = cases[(len(cases) - 1) // 2]
        ph = [c["phases_ms"].get(p, 0.0) for p in PHASES]
        total = 1e3 * c["compile_s"]
        cells = [label, c["name"][:32], f"{total:.2f}", *(f"{x:.2f}" for x in ph), f"{total - sum(ph):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def totals(results: dict[str, dict[str, dict]], engines: list[str], prefix: str) -> dict[str, dict]:
    """Sums over the subsets whose label starts with ``prefix``, and the median compile time over all their schemas."""
    out = {}
    for n in engines:
        rows = [r[n] for k, r in results.items() if k.startswith(prefix)]
        if not rows:
            continue
        cs = [c["compile_s"] for r in rows for c in r["cases"] if c["error"] is None]
        s, c = sum(r["schemas"] for r in rows), sum(r["compiled"] for r in rows)
        out[n] = {
            "schemas": s,
            "compiled": c,
            "coverage": c / s if s else float("nan"),
            "false_accepts": sum(r["false_accepts"] for r in rows),
            "false_rejects": sum(r["false_rejects"] for r in rows),
            "valid": sum(r["valid"] for r in rows),
            "invalid": sum(r["invalid"] for r in rows),
            "compile_median_ms": 1e3 * statistics.median(cs) if cs else float("nan"),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Run the benchmark (``argv``: command-line arguments) and return the per-subset results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        help="folder with JSON-Schema-Test-Suite/ and jsonschemabench/ (or DECODING_JSON_SCHEMA_DATA)",
    )
    ap.add_argument("--suites", default="testsuite,jsb", help="testsuite, jsb or both")
    ap.add_argument(
        "--subsets", default="", help="comma-separated subset names, e.g. draft7,Kubernetes (default: all)"
    )
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--limit", type=int, default=0, help="schemas per subset, sampled with --seed (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per schema and engine")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="compile / first-mask times as wall time, or as the process's CPU time (every thread; robust on a shared, loaded machine)",
    )
    ap.add_argument(
        "--cold",
        action="store_true",
        help="ours: empty the process-wide compile memos (terminal automata, lexer contexts, converter memos) "
        "before every schema, untimed, so each compile is timed as the first of a process (default: "
        "schemas compiled one after another in one process, as a server does)",
    )
    ap.add_argument("--out", help="write the results (with one record per schema and engine) as JSON here")
    ap.add_argument(
        "--show", action="store_true", help="print every failure, false accept and false reject of ours"
    )
    args = ap.parse_args(argv)
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    Ours.cold = args.cold
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = data_dir(args.data)
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from decoding.adapters.smollm2 import smollm2_dir
    from decoding.tokenizers import vocabulary

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    vocab = vocabulary(tok)
    engines = []
    for name in args.engines.split(","):
        if name not in ENGINES:
            sys.exit(f"unknown engine {name!r}: choose among {', '.join(ENGINES)}")
        cls = {"ours": Ours, "llguidance": LLGuidance, "xgrammar": XGrammar}[name]
        try:
            engines.append(cls(tok))
        except ImportError as e:
            print(f"note: {name} is not installed ({e}); skipped", file=sys.stderr)
    subsets: list[tuple[str, Any]] = []
    if "testsuite" in args.suites:
        subsets += [(f"test-suite {d}", lambda d=d: test_suite_cases(root, d)) for d in TEST_SUITE_DRAFTS]
    if "jsb" in args.suites:
        subsets += [(f"JSONSchemaBench {s}", lambda s=s: jsb_cases(root, s)) for s in JSB_SUBSETS]
    if args.subsets:
        wanted = set(args.subsets.split(","))
        unknown = wanted - {n.split()[-1] for n, _ in subsets}
        if unknown:
            sys.exit(f"unknown subsets {sorted(unknown)} for --suites {args.suites}")
        subsets = [(n, f) for n, f in subsets if n.split()[-1] in wanted]
    results: dict[str, dict[str, dict]] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for label, load in subsets:
        cases = load()
        if args.limit and len(cases) > args.limit:
            cases = random.Random(args.seed).sample(cases, args.limit)
        tallies = {e.name: Tally() for e in engines}
        for case in tqdm(cases, desc=label, file=sys.stderr):
            tests = encode_tests(case, tok, vocab)
            for e in engines:
                tallies[e.name].add(run_case(e, case, tests, args.timeout))
        results[label] = {n: t.row() for n, t in tallies.items()}
        if args.out:
            Path(args.out).write_text(
                json.dumps({"started": started, "args": vars(args), "results": results}, indent=1)
            )
    names = [e.name for e in engines]
    print(f"started {started}; {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(markdown(results, names))
    if "ours" in names:
        print("\nOur compile steps (ms) for the schema with the median compile time of each subset:")
        print(phase_table(results))
    for prefix in ("test-suite", "JSONSchemaBench"):
        for n, t in totals(results, names, prefix).items():
            print(f"{prefix} overall, {n}: {t['compiled']}/{t['schemas']} compile ({100 * t['coverage']:.1f}%), "
                  f"false accepts {t['false_accepts']}/{t['invalid']}, false rejects {t['false_rejects']}/{t['valid']}, "
                  f"compile median {t['compile_median_ms']:.1f} ms")  # fmt: skip
    for label, per in results.items():
        for n, r in per.items():
            if r["failures"]:
                print(f"{label} {n} failures: {r['failures']}")
            if r["false_accept_cases"]:
                print(f"{label} {n} FALSE ACCEPTS in: {r['false_accept_cases'][:20]}")
    if args.show and "ours" in names:
        for label, per in results.items():
            for c in per["ours"]["cases"]:
                if c["error"] or c["false_accepts"] or c["false_rejects"]:
                    print(
                        f"ours {label} {c['name']}: error={c['error']} false accepts {c['false_accepts']} false rejects {c['false_rejects']}"
                    )
    return results


if __name__ == "__main__":
    main()
