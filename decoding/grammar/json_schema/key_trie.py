"""The terminal of "any property name but these": regex text and byte NFA straight from the names' trie.

An object that lists properties and allows others needs a terminal for every key that is not a
listed name (:func:`~.keys.not_names` writes it as a tree). Going through the tree costs three
walks of the trie building tree nodes, then spelling the tree as regex text and building a
Thompson NFA over it: most of a cold compile of a typical GitHub schema. This module builds the
same language (JSON spellings, quotes included, of every string except the names; escapes as
:func:`~.encode.json_string_regex` with ``unicode_escapes=False`` writes them) in one pass each:

* the NFA has one state per trie node: a child's character goes to the child, a character the
  names use but no name continues with here goes to a free state that reads anything, a
  character no name uses goes there through one shared state (so the large class of unused
  characters is spelled once, not per node), and a node where no name ends may stop;
* the regex text is the same automaton written out: ``(?:INNER|(?:PATHS UNUSED|EXITS) ANY*)``
  with ``INNER`` the trie paths that do not end on a name, ``PATHS`` every trie path and
  ``EXITS`` a trie path followed by a used character that leaves the trie.

A character with no spelling in names (a control character without a short escape) ends its
trie path in both. ``tests/grammar/test_json_schema_key_trie.py`` checks both against the tree
route's NFA (same language byte for byte) on random name sets with escapes, prefixes, the empty
name, control characters and non-ASCII.
"""

from __future__ import annotations

from decoding.grammar.json_schema.encode import json_char
from decoding.grammar.json_schema.keys import _without_points
from decoding.grammar.json_schema.regex_ast import SURROGATES, UNIVERSE, CharSet, charset, cs_minus
from decoding.grammar.json_schema.tree_nfa import MAXWIDTH, _Builder
from decoding.grammar.regex_bytes import ByteNFA

_END = ""  # trie key marking that a name ends at this node


class OtherNames:
    """Every property name except ``names`` (a non-empty set of strings without lone surrogates).

    Raises:
        ValueError: ``names`` is empty or a name holds a lone surrogate (use :func:`~.keys.not_names`).
    """

    def __init__(self, names: frozenset[str]) -> None:
        if not names:
            raise ValueError("no names: every string is a key (the terminal of any string)")
        if any(SURROGATES[0] <= ord(c) <= SURROGATES[1] for n in names for c in n):
            raise ValueError("a name holds a lone surrogate: use keys.not_names")
        self.trie: dict = {}
        for n in names:
            node = self.trie
            for ch in n:
                node = node.setdefault(ch, {})
            node[_END] = {}
        self.used: CharSet = charset((ord(c), ord(c)) for n in names for c in n)
        self.unused: CharSet = cs_minus(UNIVERSE, self.used)

    # --- regex text -----------------------------------------------------------------------------
    def regex(self) -> str:
        """Regex text of the JSON texts (quotes included) of the other names."""
        inner = _inner(self.trie)
        tail = []
        if self.unused:
            tail.append(_paths(self.trie) + _char(self.unused))  # type: ignore[operator]
        exits = _exits(self.trie, self.used)
        if exits is not None:
            tail.append(exits)
        parts = [] if inner is None else [inner]
        if tail:
            parts.append(_group(tail) + "(?:" + _char(UNIVERSE) + ")*")  # type: ignore[operator]
        return "\\x22" + _group(parts) + "\\x22"

    # --- byte NFA -------------------------------------------------------------------------------
    def add_to(self, nfa: ByteNFA) -> tuple[int, int, int]:
        """Add the language to ``nfa``: ``(start, accept, longest match in characters)``."""
        b = _Builder(nfa, "json-keys")
        start, end = nfa.new(), nfa.new()
        root, stop, free = nfa.new(), nfa.new(), nfa.new()
        nfa.edges[start].append((0x22, 0x22, root))
        nfa.edges[stop].append((0x22, 0x22, end))
        nfa.eps[free].append(stop)
        b.chars(UNIVERSE, free, free)
        shared = -1
        if self.unused:
            shared = nfa.new()
            b.chars(self.unused, shared, free)
        todo = [(self.trie, root)]
        while todo:
            node, s = todo.pop()
            children = sorted(c for c in node if c)
            if _END not in node:
                nfa.eps[s].append(stop)
            if shared >= 0:
                nfa.eps[s].append(shared)
            leave = _without_points(self.used, [ord(c) for c in children])
            if leave:
                b.chars(leave, s, free)
            for c in children:
                t = nfa.new()
                b.chars(((ord(c), ord(c)),), s, t)
                todo.append((node[c], t))
        return start, end, MAXWIDTH


def _char(cs: CharSet) -> str | None:
    """The JSON spellings of one character of ``cs`` (``None`` when it has none: control
    characters without a short escape are not written in names)."""
    text = json_char(cs, False)
    return None if text == "(?:)" else text


def _group(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _inner(node: dict) -> str | None:
    """Trie paths from ``node`` that do not end on a name (``None``: there are none)."""
    parts = []
    for c in sorted(c for c in node if c):
        head = _char(((ord(c), ord(c)),))
        sub = _inner(node[c]) if head is not None else None
        if sub is not None:
            parts.append(head + sub)  # type: ignore[operator]
    if _END in node:
        return _group(parts) if parts else None
    return "(?:" + "|".join(parts) + ")?" if parts else ""


def _paths(node: dict) -> str:
    """Every trie path from ``node``, the empty one included."""
    parts = []
    for c in sorted(c for c in node if c):
        head = _char(((ord(c), ord(c)),))
        if head is not None:
            parts.append(head + _paths(node[c]))
    return "(?:" + "|".join(parts) + ")?" if parts else ""


def _exits(node: dict, used: CharSet) -> str | None:
    """Trie paths from ``node`` then a character of ``used`` that no name continues with."""
    children = sorted(c for c in node if c)
    leave = _without_points(used, [ord(c) for c in children])
    first = _char(leave) if leave else None
    parts = [] if first is None else [first]
    for c in children:
        head = _char(((ord(c), ord(c)),))
        sub = _exits(node[c], used) if head is not None else None
        if sub is not None:
            parts.append(head + sub)  # type: ignore[operator]
    return _group(parts) if parts else None
