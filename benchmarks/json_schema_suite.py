"""JSON Schema -> token constraint on the official test suite and JSONSchemaBench: ours vs llguidance vs xgrammar.

Every instance is serialised with ``json.dumps(ensure_ascii=False)``, tokenised with SmolLM2's
tokenizer, and fed token by token, then EOS, through each engine's token-level matcher. Per
subset it prints: coverage (schemas that compile), false accepts (invalid instances accepted),
false rejects (valid instances rejected) and compile time (median / p90 over compiled schemas),
with our figures next to each peer's in the same run.

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
import signal
import statistics
import sys
import time
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
    """Results of one engine on one subset."""

    schemas: int = 0
    compiled: int = 0
    valid: int = 0
    invalid: int = 0
    false_accepts: int = 0
    false_rejects: int = 0
    compile_s: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    false_accept_cases: list[str] = field(default_factory=list)

    def row(self) -> dict:
        cs = sorted(self.compile_s)
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
            "failures": dict(self.failures.most_common(12)),
            "false_accept_cases": self.false_accept_cases[:20],
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


class Ours:
    name = "ours"

    def __init__(self, tok: Any) -> None:
        from decoding.tokenizers import vocabulary

        self.vocab = vocabulary(tok)
        self.eos = self.vocab.eos_token_id

    def compile(self, case: Case) -> Any:
        from decoding.grammar.json_schema import compile_json_schema

        return compile_json_schema(case.schema, self.vocab, draft=case.draft, warm_seconds=0)

    def accepts(self, g: Any, ids: list[int]) -> bool:
        m = g.matcher()
        try:
            for t in ids:
                m.accept_token(t)
            m.accept_token(self.eos)
        except ValueError:
            return False
        return True

    @staticmethod
    def failure(err: Exception) -> str:
        kw = getattr(err, "keyword", None)
        return f"{kw}" if kw else f"{type(err).__name__}: {str(err)[:70]}"


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

    def accepts(self, m: Any, ids: list[int]) -> bool:
        m.reset()
        ok = all(m.consume_token(t) for t in ids)
        return ok and m.is_accepting() and m.consume_token(self.eos)

    @staticmethod
    def failure(err: Exception) -> str:
        return str(err).split("\n")[0][:70]


class XGrammar:
    name = "xgrammar"

    def __init__(self, tok: Any) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.eos = tok.eos_token_id

    def compile(self, case: Case) -> Any:
        with quiet_stderr():
            compiled = self.compiler.compile_json_schema(json.dumps(case.schema), strict_mode=False)
        return self.xgr.GrammarMatcher(compiled, terminate_without_stop_token=False)

    def accepts(self, m: Any, ids: list[int]) -> bool:
        m.reset()
        with quiet_stderr():
            ok = all(m.accept_token(t) for t in ids)
            return ok and m.accept_token(self.eos) and m.is_terminated()

    @staticmethod
    def failure(err: Exception) -> str:
        return str(err).split("\n")[0][:70]


class Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise Timeout()


# --- running ----------------------------------------------------------------------------------
def encode_tests(case: Case, tok: Any, vocab: Any) -> list[tuple[list[int], bool]]:
    """Token ids of each instance's ``json.dumps(ensure_ascii=False)`` (instances that cannot be
    spelled in UTF-8, e.g. lone surrogates, are left out)."""
    out = []
    for inst, valid in case.tests:
        text = json.dumps(inst, ensure_ascii=False)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            continue
        ids = tok.encode(text, add_special_tokens=False)
        if b"".join(vocab.tokens[i] or b"" for i in ids) != data:
            continue
        out.append((ids, valid))
    return out


def run_case(engine: Any, case: Case, tests: list, tally: Tally, timeout: float) -> None:
    tally.schemas += 1
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        start = time.perf_counter()
        try:
            handle = engine.compile(case)
        except Timeout:
            tally.failures["timeout"] += 1
            return
        except Exception as e:  # noqa: BLE001 - any engine error means "does not compile"
            tally.failures[engine.failure(e)] += 1
            return
        tally.compile_s.append(time.perf_counter() - start)
        tally.compiled += 1
        for ids, valid in tests:
            ok = engine.accepts(handle, ids)
            if valid:
                tally.valid += 1
                tally.false_rejects += not ok
            else:
                tally.invalid += 1
                if ok:
                    tally.false_accepts += 1
                    tally.false_accept_cases.append(case.name)
    except Timeout:
        tally.failures["timeout while matching"] += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def markdown(results: dict[str, dict[str, dict]], engines: list[str]) -> str:
    lines = ["| subset | schemas | " + " | ".join(f"{e} compiles" for e in engines)
             + " | " + " | ".join(f"{e} false acc / rej" for e in engines)
             + " | " + " | ".join(f"{e} compile ms (med / p90)" for e in engines) + " |"]  # fmt: skip
    lines.append("|" + "---|" * (2 + 3 * len(engines)))
    for subset, per in results.items():
        first = next(iter(per.values()))
        cells = [subset, str(first["schemas"])]
        cells += [f"{per[e]['compiled']} ({100 * per[e]['coverage']:.1f}%)" if e in per else "-" for e in engines]
        cells += [f"{per[e]['false_accepts']} / {per[e]['false_rejects']}" if e in per else "-" for e in engines]
        cells += [f"{per[e]['compile_median_ms']:.1f} / {per[e]['compile_p90_ms']:.1f}" if e in per else "-" for e in engines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder with JSON-Schema-Test-Suite/ and jsonschemabench/ (or DECODING_JSON_SCHEMA_DATA)")
    ap.add_argument("--suites", default="testsuite,jsb", help="testsuite, jsb or both")
    ap.add_argument("--subsets", default="", help="comma-separated subset names (default: all)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--limit", type=int, default=0, help="schemas per subset, sampled with --seed (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per schema and engine")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
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
        subsets = [(n, f) for n, f in subsets if n.split()[-1] in wanted]
    results: dict[str, dict[str, dict]] = {}
    started = time.strftime("%Y-%m-%d %H:%M")
    for label, load in subsets:
        cases = load()
        if args.limit and len(cases) > args.limit:
            cases = random.Random(args.seed).sample(cases, args.limit)
        tallies = {e.name: Tally() for e in engines}
        for case in tqdm(cases, desc=label, file=sys.stderr):
            tests = encode_tests(case, tok, vocab)
            for e in engines:
                run_case(e, case, tests, tallies[e.name], args.timeout)
        results[label] = {n: t.row() for n, t in tallies.items()}
        if args.out:
            Path(args.out).write_text(json.dumps({"started": started, "args": vars(args), "results": results}, indent=1))
    names = [e.name for e in engines]
    totals: dict[str, dict] = {}
    for n in names:
        rows = [r[n] for k, r in results.items() if k.startswith("JSONSchemaBench")]
        if rows:
            s, c = sum(r["schemas"] for r in rows), sum(r["compiled"] for r in rows)
            totals[n] = {"schemas": s, "compiled": c, "coverage": c / s}
    print(markdown(results, names))
    for n, t in totals.items():
        print(f"JSONSchemaBench overall, {n}: {t['compiled']}/{t['schemas']} compile ({100 * t['coverage']:.1f}%)")
    for label, per in results.items():
        for n, r in per.items():
            if r["failures"]:
                print(f"{label} {n} failures: {r['failures']}")
            if r["false_accept_cases"]:
                print(f"{label} {n} FALSE ACCEPTS in: {r['false_accept_cases']}")


if __name__ == "__main__":
    main()
