"""The process-wide memos a JSON-schema compile reads and fills, and a way to empty them all.

A process that compiles many schemas (a server) builds each recurring piece once: terminal
automata (:mod:`decoding.grammar.terminal_nfa`, keyed by the terminal's regex), lexer-context
DFAs (:mod:`decoding.grammar.context_cache`, keyed by the context's regexes) and the
``functools`` memos of the converter (JSON spellings of character classes and names, pattern and
format languages, UTF-8 byte ranges, ...). Each is keyed by everything its value depends on, so
a compile gives the same grammar and the same masks whether it finds them filled or empty
(``tests/grammar/test_json_schema_caches.py``). :func:`clear_compile_caches` empties them, so a
benchmark can time a *cold* compile: the schema compiled as if it were the first one in a
process that has only loaded its tokenizer (the vocabulary's token matrix is kept: it depends on
the tokenizer, not on any schema).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

MEMO_SIZE = 4096  # entries per input-keyed memo (user patterns, character classes, ...): bounded for long-running servers
KEPT = frozenset({"decoding.grammar.tokens._token_matrix"})  # per tokenizer, not per schema


def compile_memos() -> dict[str, Callable[[], None]]:
    """``module.function`` -> its ``cache_clear``, for every ``functools`` memo of the loaded
    modules of :mod:`decoding.grammar` (those in :data:`KEPT` left out)."""
    out: dict[str, Callable[[], None]] = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "decoding.grammar" or mod_name.startswith("decoding.grammar.")):
            continue
        for attr, obj in list(vars(mod).items()):
            clear = getattr(obj, "cache_clear", None)
            if clear is None or not hasattr(obj, "cache_info") or getattr(obj, "__module__", None) != mod_name:
                continue
            key = f"{mod_name}.{attr}"
            if key not in KEPT:
                out[key] = clear
    return out


def clear_compile_caches() -> None:
    """Empty every process-wide memo of the compile: the shared terminal automata, the shared
    lexer contexts and the converter's ``functools`` memos (not the tokenizer's token matrix)."""
    from decoding.grammar.context_cache import clear_contexts
    from decoding.grammar.terminal_nfa import clear_terminal_automata

    clear_terminal_automata()
    clear_contexts()
    for clear in compile_memos().values():
        clear()
