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

from functools import lru_cache

from decoding.grammar.json_schema.encode import json_char
from decoding.grammar.json_schema.keys import _without_points
from decoding.grammar.json_schema.regex_ast import SURROGATES, UNIVERSE, CharSet, charset, cs_minus
from decoding.grammar.json_schema.tree_nfa import _ESCAPED_ASCII, MAXWIDTH, _Builder, _raw_ascii
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
        spelled: dict[str, str | None] = {}  # a character of the names -> its JSON spellings
        inner, paths, exits = _walk(self.trie, self.used, spelled, {})
        tail = []
        if self.unused:
            tail.append(paths + _char(self.unused))  # type: ignore[operator]
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
        nfa.edges[start] += (0x22, 0x22, root)
        nfa.edges[stop] += (0x22, 0x22, end)
        nfa.eps[free].append(stop)
        b.chars(UNIVERSE, free, free)
        shared = -1
        if self.unused:
            shared = nfa.new()
            b.chars(self.unused, shared, free)
        leaves: dict[str, list[int] | None] = {}  # a node's children -> its flat edges to free (raw ASCII)
        edges, eps = nfa.edges, nfa.eps
        todo = [(self.trie, root)]
        while todo:
            node, s = todo.pop()
            children = sorted(c for c in node if c)
            if _END not in node:
                eps[s].append(stop)
            if shared >= 0:
                eps[s].append(shared)
            kids = "".join(children)
            flat = leaves.get(kids, ())
            if flat == ():  # first node with these children: the edges of the used characters left
                leave = _without_points(self.used, [ord(c) for c in children])
                flat = leaves[kids] = None
                if leave and leave[-1][1] < 0x80 and _raw_ascii(leave):
                    flat = leaves[kids] = [x for lo, hi in leave for x in (lo, hi, free)]
                elif leave:
                    b.chars(leave, s, free)
            elif flat is None:
                leave = _without_points(self.used, [ord(c) for c in children])
                if leave:
                    b.chars(leave, s, free)
            if flat:
                edges[s] += flat  # what b.chars(leave, s, free) adds for raw ASCII
            for c in children:
                t = nfa.new()
                cp = ord(c)
                if cp < 0x80 and not _ESCAPED_ASCII[cp]:
                    edges[s] += (cp, cp, t)  # what b.chars(((cp, cp),), s, t) adds
                else:
                    b.chars(((cp, cp),), s, t)
                todo.append((node[c], t))
        return start, end, MAXWIDTH


@lru_cache(maxsize=1 << 12)
def other_names_regex(names: frozenset[str]) -> str:
    """:meth:`OtherNames.regex` of ``names``, memoised across compiles: name sets recur between
    schemas (over 40% of these terminals of JSONSchemaBench-10 repeat a set that an earlier
    schema had), and the text is a function of the set alone (children are walked sorted)."""
    return OtherNames(names).regex()


def add_other_names(nfa: ByteNFA, names: frozenset[str]) -> tuple[int, int, int]:
    """:meth:`OtherNames.add_to` of ``names`` (the trie is built only when the automaton is)."""
    return OtherNames(names).add_to(nfa)


def _char(cs: CharSet) -> str | None:
    """The JSON spellings of one character of ``cs`` (``None`` when it has none: control
    characters without a short escape are not written in names)."""
    text = json_char(cs, False)
    return None if text == "(?:)" else text


def _group(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _walk(
    node: dict, used: CharSet, spelled: dict[str, str | None], firsts: dict[str, str | None]
) -> tuple[str | None, str, str | None]:
    """From ``node``: the trie paths that do not end on a name (``None``: none), every trie path
    (the empty one included), and the trie paths followed by a character of ``used`` that no
    name continues with (``None``: none); one walk for the three. ``firsts`` keeps the spelling
    of the characters that leave the trie per set of children (many nodes have the same)."""
    children = sorted(c for c in node if c)
    kids = "".join(children)
    first = firsts.get(kids, "")
    if first == "":
        leave = _without_points(used, [ord(c) for c in children])
        first = firsts[kids] = _char(leave) if leave else None
    inner_parts: list[str] = []
    path_parts: list[str] = []
    exit_parts = [] if first is None else [first]
    for c in children:
        head = spelled.get(c, "")
        if head == "":
            head = spelled[c] = _char(((ord(c), ord(c)),))
        if head is None:
            continue
        inner, paths, exits = _walk(node[c], used, spelled, firsts)
        if inner is not None:
            inner_parts.append(head + inner)
        path_parts.append(head + paths)
        if exits is not None:
            exit_parts.append(head + exits)
    if _END in node:
        inner_all = _group(inner_parts) if inner_parts else None
    else:
        inner_all = "(?:" + "|".join(inner_parts) + ")?" if inner_parts else ""
    paths_all = "(?:" + "|".join(path_parts) + ")?" if path_parts else ""
    return inner_all, paths_all, (_group(exit_parts) if exit_parts else None)
