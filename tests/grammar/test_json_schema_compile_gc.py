"""Compile-time garbage of the JSON Schema converter: a compile (or a refusal) leaves its working
state to reference counting, not to the cyclic collector, and releasing it changes no grammar."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest

from decoding.grammar.json_schema import convert
from decoding.grammar.json_schema.emit import GrammarBuilder
from decoding.grammar.json_schema.keywords import Normalizer
from decoding.grammar.json_schema.refs import Resolver
from decoding.grammar.json_schema.shapes import Algebra, Unsupported
from tests.grammar.test_json_schema_compile_memos import SCHEMAS

CONVERTER_STATE = (Normalizer, Resolver, Algebra, GrammarBuilder)


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


def _spec_key(spec) -> tuple:
    t = spec.table
    return (spec.terminals, spec.ignore, spec.rules, spec.start, t.actions, t.start_state, t.end_state)


@pytest.mark.parametrize("refused", [False, True])
def test_a_compile_leaves_no_converter_state_to_the_collector(collector_off: None, refused: bool) -> None:
    schemas = [{"type": "string", "pattern": "(?<=a)b"}] if refused else SCHEMAS[:12]

    def run() -> None:
        for s in schemas:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    convert.json_schema_spec(s)
                except Unsupported:
                    assert refused
                else:
                    assert not refused

    run()  # fill the process-wide memos first
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    run()
    gc.collect()
    left = [o for o in gc.garbage if isinstance(o, CONVERTER_STATE)]
    if refused:  # the raising frames form cycles with the exception; the state they hold is emptied
        left = [o for o in left if vars(o)]
    assert not left, f"{len(left)} converter objects were freed only by the cyclic collector"


def test_releasing_the_working_state_changes_no_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        released = [_spec_key(convert.json_schema_spec(s)) for s in SCHEMAS]
        monkeypatch.setattr(convert, "_release", lambda builder: None)
        kept = [_spec_key(convert.json_schema_spec(s)) for s in SCHEMAS]
    assert released == kept
