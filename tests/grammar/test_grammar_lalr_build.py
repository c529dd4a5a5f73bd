"""Our LALR(1) builder and the direct JSON Schema grammar against lark: same tables, same masks.

* :func:`build_lalr` on lark's own BNF rules gives lark's table state for state (shipped grammars
  and converted schemas), and the two tables accept the same random terminal strings;
* :func:`json_schema_spec` (no grammar text, no lark) gives the rules, terminals and table lark
  builds from :func:`json_schema_to_lark`'s text, including lark's helper rules for ``~ a..b``;
* compiled masks are identical token by token along valid and invalid instances, whether the
  terminal automata come from the process-wide cache or are built afresh.
"""

from __future__ import annotations

import json
import random
import warnings

import pytest

from decoding.grammar.compiled import CompiledGrammar
from decoding.grammar.json_schema import json_schema_to_lark
from decoding.grammar.json_schema.convert import json_schema_spec, lalr_parser
from decoding.grammar.json_schema.shapes import Unsupported
from decoding.grammar.lalr import LalrDriver
from decoding.grammar.lalr_build import LalrConflict, build_lalr
from decoding.grammar.loader import grammar_source
from decoding.grammar.spec import END, ParseTable, spec_from_lark
from decoding.grammar.terminal_nfa import clear_terminal_automata
from decoding.tokenizers import vocabulary
from tests.grammar.grammar_fixtures import GRAMMARS, assert_same_masks, get_tokenizer, masks_along
from tests.grammar.json_schema_cases import CASES, OBJ, PETS, TREE

REPEATS = [  # every shape of lark's repetition expansion (below and above its threshold of 50)
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3},
    {"type": "array", "items": {"type": "integer"}, "minItems": 60},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 1000},
    {"type": "array", "items": {"type": "integer"}, "minItems": 57, "maxItems": 123},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 77, "maxItems": 77},
    {
        "type": "array",
        "prefixItems": [{"type": "string"}],
        "items": {"type": "null"},
        "minItems": 3,
        "maxItems": 70,
    },
]
SCHEMAS = [OBJ, TREE, PETS, *REPEATS] + list(
    {json.dumps(s, sort_keys=True): s for _, s, _, _ in CASES}.values()
)


def same_tables(mine: ParseTable, mine_rules: list, theirs: ParseTable, their_rules: list) -> int:
    """Assert the two tables are equal up to state numbering (reductions compared by rule); returns the state count."""
    to = {mine.start_state: theirs.start_state}
    todo = [mine.start_state]
    while todo:
        s = todo.pop()
        a_row, b_row = mine.actions[s], theirs.actions[to[s]]
        assert set(a_row) == set(b_row), (sorted(a_row), sorted(b_row))
        for sym, a in a_row.items():
            b = b_row[sym]
            assert a[0] == b[0], (sym, a, b)
            if a[0] == "s":
                if a[1] in to:
                    assert to[a[1]] == b[1]
                else:
                    to[a[1]] = b[1]
                    todo.append(a[1])
            else:
                assert mine_rules[a[3]] == their_rules[b[3]]
    assert len(to) == len(mine.actions) == len(theirs.actions)
    assert to[mine.end_state] == theirs.end_state
    return len(to)


def _schema_specs(schema):
    """``(ours, lark's)`` grammar specs of a schema, or ``None`` when it does not convert."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            text = json_schema_to_lark(schema, check=False)
        except Unsupported:
            return None
        return json_schema_spec(schema), spec_from_lark(lalr_parser(text))


@pytest.mark.parametrize("name", GRAMMARS)
def test_tables_equal_lark_on_shipped_grammars(name: str) -> None:
    from decoding.grammar.checks import load_lark

    spec = spec_from_lark(load_lark(grammar_source(name)[0], name))
    table = build_lalr(spec.rules, [t.name for t in spec.terminals], spec.start)
    assert same_tables(table, spec.rules, spec.table, spec.rules) == len(spec.table.actions) > 1


def test_direct_spec_equals_lark_on_schemas() -> None:
    """Rules (with lark's helper-rule names), terminals with their tie-break data, and tables."""
    checked = 0
    for schema in SCHEMAS:
        pair = _schema_specs(schema)
        if pair is None:
            continue
        ours, theirs = pair
        assert sorted(ours.rules) == sorted(theirs.rules), schema
        key = [
            (t.name, t.regex if t.literal else "", t.literal, t.max_width, t.value_len, t.priority)
            for t in ours.terminals
        ]
        assert key == [
            (t.name, t.regex if t.literal else "", t.literal, t.max_width, t.value_len, t.priority)
            for t in theirs.terminals
        ]
        same_tables(ours.table, ours.rules, theirs.table, theirs.rules)
        checked += 1
    assert checked > 100
    helpers = {o for s in REPEATS for o, _ in _schema_specs(s)[0].rules if o.startswith("__")}
    assert any("_star_" in o for o in helpers) and any("_opt_" in o for o in helpers)  # both expansions ran


def _random_walk(driver: LalrDriver, terminals: list[str], rng: random.Random, steps: int) -> list[str]:
    """Terminals chosen among those the parser accepts (so walks go deep), about once per walk any."""
    out = []
    sid = driver.root
    for _ in range(steps):
        ok = sorted(driver.accepts(sid))
        t = rng.choice(ok) if ok and rng.random() > 1 / steps else rng.choice(terminals)
        out.append(t)
        sid = driver.feed(sid, t)
        if sid < 0:
            break
    return out


def _verdicts(driver: LalrDriver, seq: list[str]) -> list[object]:
    sid, out = driver.root, []
    for t in seq:
        sid = driver.feed(sid, t)
        out.append(sid >= 0 and driver.accepts_end(sid))
        if sid < 0:
            break
    return out


@pytest.mark.parametrize("which", ["sql_select", "json", "OBJ", "TREE", "PETS", "REPEAT"])
def test_tables_accept_the_same_terminal_strings(which: str) -> None:
    """Random terminal strings: every prefix is accepted / complete under both tables alike."""
    from decoding.grammar.checks import load_lark

    if which in ("sql_select", "json"):
        theirs = spec_from_lark(load_lark(grammar_source(which)[0], which))
        rules = theirs.rules
        ours = build_lalr(rules, [t.name for t in theirs.terminals], theirs.start)
    else:
        schema = {"OBJ": OBJ, "TREE": TREE, "PETS": PETS, "REPEAT": REPEATS[4]}[which]
        spec, theirs = _schema_specs(schema)
        ours = spec.table
    terminals = sorted({t.name for t in theirs.terminals} | {END})
    a, b = LalrDriver(ours), LalrDriver(theirs.table)
    rng = random.Random(0)
    complete = 0
    for _ in range(300):
        seq = _random_walk(b if rng.random() < 0.5 else a, terminals, rng, rng.randint(1, 300))
        va, vb = _verdicts(a, seq), _verdicts(b, seq)
        assert va == vb, seq
        complete += sum(v is True for v in va)
    assert complete > 10


def test_reduce_reduce_conflict_is_refused() -> None:
    rules = [("start", ("a",)), ("start", ("b",)), ("a", ("X",)), ("b", ("X",))]
    with pytest.raises(LalrConflict, match="Reduce/Reduce"):
        build_lalr(rules, ["X"], "start")
    with pytest.raises(ValueError, match="undefined symbol 'c'"):
        build_lalr([("start", ("c",))], ["X"], "start")


def test_shift_reduce_conflict_shifts_like_lark() -> None:
    """The dangling else: lark resolves it as a shift; so do we."""
    from lark import Lark

    text = 'start: s\ns: "if" "x" s | "if" "x" s "else" s | "y"\n'
    theirs = spec_from_lark(Lark(text, parser="lalr"))
    ours = build_lalr(theirs.rules, [t.name for t in theirs.terminals], "start")
    same_tables(ours, theirs.rules, theirs.table, theirs.rules)


def _instances(schema) -> list[str]:
    texts = [json.dumps(inst, ensure_ascii=False) for _, s, inst, _ in CASES if s == schema]
    return texts or ["[1, 2, 3]", '{"a": 1}', '"x"', "[true, false]"]


@pytest.mark.parametrize(
    "schema", [OBJ, TREE, PETS, REPEATS[0], REPEATS[6]], ids=["OBJ", "TREE", "PETS", "REP0", "REP6"]
)
def test_masks_identical_to_the_lark_path(schema) -> None:
    tok = get_tokenizer("smollm2")
    vocab = vocabulary(tok)
    ours = CompiledGrammar(json_schema_spec(schema), vocab)
    clear_terminal_automata()  # and the lark path builds its automata afresh
    theirs = CompiledGrammar(lalr_parser(json_schema_to_lark(schema)), vocab)
    steps = 0
    for text in _instances(schema):
        ids = tok.encode(text, add_special_tokens=False)
        steps += assert_same_masks(masks_along(ours, ids), masks_along(theirs, ids))
    assert steps > 5


def test_cached_automata_give_the_same_masks() -> None:
    """A grammar whose terminals come from the shared cache masks exactly like one built on a fresh cache."""
    tok = get_tokenizer("smollm2")
    vocab = vocabulary(tok)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 5}, "n": {"type": "number"}},
    }
    other = {
        "type": "array",
        "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
    }
    clear_terminal_automata()
    first = CompiledGrammar(json_schema_spec(other), vocab)
    cached = CompiledGrammar(json_schema_spec(schema), vocab)  # shares terminals with ``other``
    assert cached._nfa is first._nfa and set(first._starts) & set(cached._starts)  # really reused
    clear_terminal_automata()
    fresh = CompiledGrammar(json_schema_spec(schema), vocab)
    assert fresh._nfa is not cached._nfa
    for text in ['{"name": "abc", "n": -1.5e3}', '{"n": 2, "name": "abcdef"}', '{"x": [1, {"y": null}]}']:
        ids = tok.encode(text, add_special_tokens=False)
        assert_same_masks(masks_along(cached, ids), masks_along(fresh, ids))


def _random_grammar(rng: random.Random) -> str:
    nts = [f"n{i}" for i in range(rng.randint(1, 6))]
    lines = ["start: n0"]
    for n in nts:
        alts = []
        for _ in range(rng.randint(1, 4)):
            syms = [rng.choice([*nts, '"a"', '"b"', '"c"']) for _ in range(rng.randint(0, 4))]
            alts.append(" ".join(syms))
        lines.append(f"{n}: " + " | ".join(dict.fromkeys(alts)))
    return "\n".join(lines) + "\n"


def test_random_grammars_match_lark() -> None:
    """Small random grammars (nullable, recursive, conflicting): the same table, or both refuse."""
    from lark import Lark
    from lark.exceptions import GrammarError as LarkGrammarError

    rng = random.Random(1)
    built = refused = 0
    for _ in range(600):
        text = _random_grammar(rng)
        try:
            theirs = spec_from_lark(Lark(text, parser="lalr"))
        except LarkGrammarError as e:
            if "Reduce/Reduce" not in str(e):
                continue  # e.g. rules defined twice: not a table question
            lark_rules = _rules_before_tables(text)
            with pytest.raises(LalrConflict):
                build_lalr(lark_rules, ["A", "B", "C"], "start")
            refused += 1
            continue
        ours = build_lalr(theirs.rules, [t.name for t in theirs.terminals], "start")
        same_tables(ours, theirs.rules, theirs.table, theirs.rules)
        built += 1
    assert built > 100 and refused > 20


def _rules_before_tables(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Lark's BNF rules of ``text`` (without building its table)."""
    from lark.load_grammar import load_grammar

    grammar, _ = load_grammar(text, "<test>", None, False)
    _, rules, _ = grammar.compile(["start"], "*")
    return [(str(r.origin.name), tuple(s.name for s in r.expansion)) for r in rules]


def test_lark_includes_quirk_is_reproduced() -> None:
    """Lark also walks the items of ``B`` past their start in ``p`` for *includes* (more lookaheads
    than DeRemer-Pennello's relation gives); on this grammar that changes the table, and ours follows."""
    from lark import Lark

    text = (
        'start: n0\nn0: n4 n1 | "b" n4\nn1: n0 n2 n0 "c" | n1 n0 n3 n4 | \nn2: n4 n0 "c" n2\n'
        'n3: "b" "b" n1 "b" | n0 "b" | "c" | n0 n1 n1\nn4: "a" n0\n'
    )
    theirs = spec_from_lark(Lark(text, parser="lalr"))
    ours = build_lalr(theirs.rules, [t.name for t in theirs.terminals], "start")
    same_tables(ours, theirs.rules, theirs.table, theirs.rules)


def _same_language(d1, d2) -> bool:
    """Two byte DFAs accept the same strings (breadth-first over state pairs)."""
    from decoding.grammar.dfa import START

    seen = {(START, START)}
    todo = [(START, START)]
    while todo:
        p, q = todo.pop()
        if bool(d1.accepts[p]) != bool(d2.accepts[q]):
            return False
        for b in range(256):
            pair = (d1.rows[p][b], d2.rows[q][b])
            if pair not in seen:
                seen.add(pair)
                todo.append(pair)
    return True


def test_tree_automata_equal_their_regex_text() -> None:
    """Every terminal the converter writes from a tree (or builds without one: key_trie.py, listed names): the NFA
    built from the tree accepts the language of the NFA parsed from its regex text, and its
    width is ``re``'s for that text."""
    from decoding.grammar.dfa import build_dfa
    from decoding.grammar.json_schema.emit import GrammarBuilder
    from decoding.grammar.json_schema.keywords import Normalizer
    from decoding.grammar.json_schema.tree_nfa import add_tree, tree_width
    from decoding.grammar.regex_bytes import ByteNFA, max_width, parse_regex

    extra = [
        {"type": "string", "pattern": "^[a-z\u00e9\u4e00-\u9fff]{2,4}$"},
        {"type": "string", "enum": ['a"b', "c\\d", "e/f", "\t\u0001", "\u00e9\U0001f600"]},
        {
            "type": "object",
            "properties": {"\u00e9t\u00e9": {}, "a/b": {}, 'q"': {}},
            "additionalProperties": {"type": "integer"},
        },
        {"type": "string", "format": "date-time"},
        {"type": "number", "multipleOf": 0.5, "minimum": -3, "maximum": 7},
    ]
    checked = built = 0
    for schema in [*SCHEMAS, *extra]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                norm = Normalizer(schema, draft=None, strict=True, narrow=True)
                b = GrammarBuilder(norm)
                b.kept_rules(b.value(norm.root_ref))
            except Unsupported:
                continue
        for regex, (tree, spell) in b.trees.items():
            n1, n2 = ByteNFA(), ByteNFA()
            s1, e1 = add_tree(n1, tree, spell)
            parsed = parse_regex(regex)
            s2, e2 = n2.add_parsed(parsed)
            assert _same_language(build_dfa(n1, [s1], {e1: 1}), build_dfa(n2, [s2], {e2: 1})), regex
            assert tree_width(tree, spell) == max_width(parsed), regex
            checked += 1
        for regex, build in b.builds.items():  # terminals built without a tree (key_trie.py)
            n1, n2 = ByteNFA(), ByteNFA()
            s1, e1, w1 = build(n1)
            parsed = parse_regex(regex)
            s2, e2 = n2.add_parsed(parsed)
            assert _same_language(build_dfa(n1, [s1], {e1: 1}), build_dfa(n2, [s2], {e2: 1})), regex
            assert w1 == max_width(parsed), regex
            built += 1
    assert checked > 100 and built > 50


def test_shared_lexer_contexts_give_the_same_masks() -> None:
    """Context DFAs and vocabulary runs reused from another grammar mask exactly like fresh ones."""
    from decoding.grammar.context_cache import clear_contexts

    tok = get_tokenizer("smollm2")
    vocab = vocabulary(tok)
    first = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}}
    second = {"type": "object", "properties": {"b": {"type": "array"}, "a": {"type": "integer"}}, "required": ["a"]}
    clear_contexts()
    g1 = CompiledGrammar(json_schema_spec(first), vocab)
    g1.mask(g1.initial)
    shared = CompiledGrammar(json_schema_spec(second), vocab)
    assert shared.context(shared.ctx_of(shared.initial[0])) is g1.context(g1.ctx_of(g1.initial[0]))  # "{" + WS
    clear_contexts()
    clear_terminal_automata()
    fresh = CompiledGrammar(json_schema_spec(second), vocab)
    for text in ['{"a": 1, "b": [2, {"c": null}]}', '{"b": [], "a": -3}', '{"a": 1.5}', '{ "a" : 7 }']:
        ids = tok.encode(text, add_special_tokens=False)
        assert_same_masks(masks_along(shared, ids), masks_along(fresh, ids))
