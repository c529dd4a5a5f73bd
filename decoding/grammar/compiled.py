r"""A lark grammar compiled against a vocabulary: exact next-token masks over bytes.

Semantics (lark's contextual LALR lexer, made incremental, with maximal munch):

* The lexer context is the set of terminals in the LALR table row of the state on top of the
  parser stack, plus the ``%ignore`` terminals. The current lexeme grows greedily: a byte that
  some context terminal can still use extends it.
* A byte that no context terminal can use ends the lexeme: it must fully match a terminal the
  parser accepts (or an ignored one); among several, the highest priority wins, then a string
  literal over a regex (lark's keyword rule), then the longer maximum width, then the name.
  That terminal is fed to the parser and the byte starts the next lexeme.
* A text is a viable prefix when the parser accepted every lexeme so far and the open lexeme can
  still become a terminal the parser accepts; it is a sentence when, in addition, the open
  lexeme completes such a terminal after which ``$END`` is accepted.

Where this differs from lark (detected at compile time): lark's scanner takes the *first* context
terminal that matches, in its order (priority, then maximum width, ...), with Python ``re``'s
first-alternative match inside a terminal, not the longest match. The two agree unless a
terminal that lark tries first can match a proper prefix of another's lexeme, or a terminal's
regex lists a shorter alternative before a longer one it prefixes: ``INT: /\d+/`` before
``DATE: /\d{4}-\d{2}-\d{2}/`` (lark lexes ``2019`` of a date as ``INT`` and fails at ``-``), or
``NUMBER: /\d+|\d+\.\d+/`` (lark matches ``3`` of ``3.14``). For such grammars this engine would
generate texts of the grammar's rules over the terminals' full languages that lark's own parser
rejects, so :func:`compile_grammar` refuses them (:func:`~decoding.grammar.lexer_order.check_lexer_order`,
whose message says how to write them: a higher priority for the longer terminal, the longer
alternative first, or prefix-free languages). The JSON Schema path compiles without the check
(``check_lexer=False``): its oracle is the schema, not lark's lexer, and some of its number terminals
list a shorter alternative first (with ``minimum: 5``, ``[5-9]`` before ``[1-9][0-9]+``: lark rejects
``50``, which the schema allows).

A matcher's state is ``(stack id, DFA state)``: two ints. Masks are computed for all tokens at
once by running the lexer DFA over the vocabulary's byte matrix (numpy), consulting the parser
only where a lexeme ends inside a token, and are cached per state. This follows the design of
llguidance (token trie + lexer DFA + parser checks at lexeme ends) and XGrammar
(arXiv:2411.15100: context-independent tokens precomputed per lexer state).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decoding.grammar.context_cache import ContextEntry, context_entry
from decoding.grammar.dfa import DEAD, START, ByteDFA, build_dfa
from decoding.grammar.lalr import LalrDriver
from decoding.grammar.loader import GrammarError, grammar_source
from decoding.grammar.mask_tree import MaskComputation, State, _Node
from decoding.grammar.regex_bytes import RegexError
from decoding.grammar.spec import GrammarSpec, spec_from_lark
from decoding.grammar.terminal_nfa import terminal_automata
from decoding.grammar.tokens import token_matrix
from decoding.tokenizers.vocab import Vocabulary, vocabulary


def _bake_ignored(d: ByteDFA, ignore: int) -> None:
    """Let lexemes of ``%ignore`` terminals (bits ``ignore``) flow into the next lexeme inside the DFA.

    In a state where only ignored terminals match, a byte that cannot extend the lexeme ends
    it (the parser is unchanged) and starts a new one from the start state: exactly the
    transition from the start state. Copying those transitions in saves a parser round trip
    per whitespace run and keeps the vectorised runs shallow.
    """
    if not ignore:
        return
    start_row = d.delta[START]
    for q in range(START + 1, d.num_states):
        a = d.accepts[q]
        if a and not a & ~ignore:
            row = d.delta[q]
            fill = row == DEAD
            row[fill] = start_row[fill]
            d.rows[q] = tuple(row.tolist())


class CompiledGrammar(MaskComputation):
    """A grammar compiled for one vocabulary; shared (and its caches reused) by all its matchers.

    Args:
        grammar: a :class:`~decoding.grammar.spec.GrammarSpec`, or a ``lark.Lark`` object built
            with ``parser="lalr"`` (read through :func:`~decoding.grammar.spec.spec_from_lark`).
        vocab: the token bytes (see :func:`decoding.tokenizers.vocabulary`).
        name: a display name for messages.
        mask_cache_size: how many ``(V,)`` masks to keep (least recently used are dropped).
    """

    def __init__(self, grammar: Any, vocab: Vocabulary, name: str = "grammar", mask_cache_size: int = 4096):
        spec = grammar if isinstance(grammar, GrammarSpec) else spec_from_lark(grammar)
        self.name = name
        self.spec = spec
        self.lark = spec.source  # the lark.Lark object, when the grammar came from lark text
        self.vocab = vocab
        self.eos_token_id = vocab.eos_token_id
        self.vocab_size = len(vocab)
        self.terminals = spec.terminals
        self.term_names = [t.name for t in self.terminals]
        self.term_index = {n: i for i, n in enumerate(self.term_names)}
        self.ignore_mask = 0
        for n in spec.ignore:
            self.ignore_mask |= 1 << self.term_index[n]
        try:
            self._nfa, states = terminal_automata([t.regex for t in self.terminals])
        except RegexError as err:
            bad = next(t for t in self.terminals if t.regex == getattr(err, "pattern", None))
            raise GrammarError(f"terminal {bad.name} ({bad.regex!r}): {err}") from err
        self._starts: list[int] = [s for s, _, _ in states]
        self._ends: list[int] = [e for _, e, _ in states]
        self._tag: dict[int, int] = {}  # NFA accept state -> bitmask of the terminals ending there
        for i, e in enumerate(self._ends):
            self._tag[e] = self._tag.get(e, 0) | 1 << i
        self.rank = sorted(range(len(self.terminals)), key=lambda i: self.terminals[i].rank_key())
        self.parser = LalrDriver(spec.table)
        self._ctx_of_lalr: dict[Any, int] = {}
        self._ctx_terms: list[int] = []
        ctx_index: dict[int, int] = {}
        bits_of: dict[tuple[str, ...], int] = {}  # many states have the same terminals
        for st, terms in self.parser.terminals_at.items():
            bits = bits_of.get(terms)
            if bits is None:
                bits = self.ignore_mask
                for t in terms:
                    if t in self.term_index:
                        bits |= 1 << self.term_index[t]
                bits_of[terms] = bits
            if bits not in ctx_index:
                ctx_index[bits] = len(self._ctx_terms)
                self._ctx_terms.append(bits)
            self._ctx_of_lalr[st] = ctx_index[bits]
        self._dfas: list[ByteDFA | None] = [None] * len(self._ctx_terms)
        self._entries: list[ContextEntry | None] = [None] * len(self._ctx_terms)
        self.tokens = token_matrix(vocab)
        self._roots: dict[tuple[int, int], _Node] = {}
        self._ok: dict[int, int] = {}
        self._ok_tables: dict[tuple[int, int], tuple[np.ndarray, list[int]]] = {}
        self._step: dict[tuple[int, int, int], State] = {}
        self._masks: OrderedDict[State, torch.Tensor] = OrderedDict()
        self.mask_cache_size = mask_cache_size
        self._shared: dict[tuple, tuple[torch.Tensor, bool]] = {}
        self._depths: dict[tuple[int, Any], list[int]] = {}
        self.stats = {"mask_hits": 0, "mask_shared_hits": 0, "mask_misses": 0}
        self.initial: State = (self.parser.root, START)

    # --- lexer contexts ---------------------------------------------------------------------
    def dfa(self, ctx: int) -> ByteDFA:
        """The lexer DFA of context ``ctx`` (its states' accept bits are this grammar's terminals)."""
        d = self._dfas[ctx]
        if d is None:
            entry = self.context(ctx)
            idx = [i for i in range(len(self.terminals)) if self._ctx_terms[ctx] >> i & 1]
            local = entry.dfa
            if local.accepts[START]:
                names = [self.term_names[i] for k, i in enumerate(idx) if local.accepts[START] >> k & 1]
                raise GrammarError(f"terminal(s) {names} match the empty string; terminals must be non-empty")
            glob: dict[int, int] = {0: 0}

            def to_global(m: int) -> int:
                g = glob.get(m)
                if g is None:
                    g = glob[m] = sum(1 << i for k, i in enumerate(idx) if m >> k & 1)
                return g

            d = ByteDFA(local.delta, local.rows, [to_global(a) for a in local.accepts], [to_global(r) for r in local.reach])
            self._dfas[ctx] = d
        return d

    def context(self, ctx: int) -> ContextEntry:
        """The process-wide entry of context ``ctx`` (:mod:`~decoding.grammar.context_cache`)."""
        entry = self._entries[ctx]
        if entry is None:
            bits = self._ctx_terms[ctx]
            idx = [i for i in range(len(self.terminals)) if bits >> i & 1]
            ignored = sum(1 << k for k, i in enumerate(idx) if self.ignore_mask >> i & 1)
            key = (tuple(self.terminals[i].regex for i in idx), ignored)

            def build() -> ByteDFA:
                local = build_dfa(
                    self._nfa,
                    [self._starts[i] for i in idx],
                    self._local_tags(idx),
                )
                if not local.accepts[START]:
                    _bake_ignored(local, ignored)
                return local

            entry = self._entries[ctx] = context_entry(key, build)
        return entry

    def _local_tags(self, idx: list[int]) -> dict[int, int]:
        """NFA accept state -> local bits (several terminals of one regex share an accept state)."""
        tags: dict[int, int] = {}
        for k, i in enumerate(idx):
            tags[self._ends[i]] = tags.get(self._ends[i], 0) | 1 << k
        return tags

    def ctx_of(self, sid: int) -> int:
        return self._ctx_of_lalr[self.parser.top(sid)]

    def ok_bits(self, sid: int) -> int:
        """Terminals that may end the open lexeme: those the parser accepts, plus ignored ones."""
        ok = self._ok.get(sid)
        if ok is None:
            ok = self.ignore_mask
            for t in self.parser.accepts(sid):
                ok |= 1 << self.term_index[t]
            self._ok[sid] = ok
        else:
            self.parser.accepts(sid)  # cached; lowers parser.low to the depth it read
        return ok

    def ok_tables(self, ctx: int, ok: int) -> tuple[np.ndarray, list[int]]:
        """``(live (S,) bool, choice (S,) terminal index or -1)`` for context ``ctx`` and ok-set ``ok``."""
        key = (ctx, ok)
        out = self._ok_tables.get(key)
        if out is None:
            d = self.dfa(ctx)
            live = np.array([bool(r & ok) for r in d.reach], dtype=bool)
            choice = []
            for a in d.accepts:
                a &= ok
                choice.append(next((i for i in self.rank if a >> i & 1), -1) if a else -1)
            out = self._ok_tables[key] = (live, choice)
        return out

    # --- scalar stepping (accepting tokens) ---------------------------------------------------
    def _complete(self, sid: int, q: int) -> int:
        """Stack after closing the open lexeme in state ``q``; -1 if it matches no acceptable terminal."""
        ctx = self.ctx_of(sid)
        t = self.ok_tables(ctx, self.ok_bits(sid))[1][q]
        if t < 0:
            return -1
        if self.ignore_mask >> t & 1:
            return sid
        return self.parser.feed(sid, self.term_names[t])

    def step_bytes(self, state: State, data: bytes) -> State | None:
        """State after ``data``, or ``None`` when ``data`` makes the text unviable."""
        sid, q = state
        ctx = self.ctx_of(sid)
        rows = self.dfa(ctx).rows
        for b in data:
            q2 = rows[q][b]
            if q2 == DEAD:
                sid = self._complete(sid, q)
                if sid < 0:
                    return None
                ctx = self.ctx_of(sid)
                rows = self.dfa(ctx).rows
                q2 = rows[START][b]
                if q2 == DEAD:
                    return None
            q = q2
        if not self.ok_tables(ctx, self.ok_bits(sid))[0][q]:
            return None
        return (sid, q)

    def step_token(self, state: State, token_id: int) -> State | None:
        """State after token ``token_id`` (not EOS), or ``None`` if the grammar forbids it."""
        key = (state[0], state[1], token_id)
        out = self._step.get(key, False)
        if out is False:
            data = self.tokens.bytes_of[token_id] if 0 <= token_id < self.vocab_size else None
            out = None if not data else self.step_bytes(state, data)
            self._step[key] = out
        return out

    def is_complete(self, state: State) -> bool:
        """Whether the text so far is a sentence of the grammar."""
        sid, q = state
        if q == START:
            return self.parser.accepts_end(sid)
        sid2 = self._complete(sid, q)
        return sid2 >= 0 and self.parser.accepts_end(sid2)

    def expected(self, state: State) -> str:
        """What the grammar expects at ``state``: terminals and the rules they appear in (for errors)."""
        sid, q = state
        if q != START:
            closed = self._complete(sid, q)
            sid = closed if closed >= 0 else sid
        terms = sorted(self.parser.accepts(sid))
        wanted = set(terms)
        rules = sorted({origin for origin, expansion in self.spec.rules if wanted.intersection(expansion)})
        shown = [r for r in rules if not r.startswith("_")] or rules
        where = f" (in rule {', '.join(repr(r) for r in shown)})" if shown else ""
        return f"the grammar expects one of the terminals {terms}{where}"

    def clear_caches(self) -> None:
        """Drop every cached mask, memo and vocabulary run (results are unchanged; for tests)."""
        self._masks.clear()
        self._shared.clear()
        self._depths.clear()
        self._roots.clear()
        self._step.clear()

    def warm_up(self, seconds: float = 1.0) -> int:
        """Precompute vocabulary runs from the lexer states tokens lead to, breadth first.

        Starts from every context's start state (offsets 0 and 1), then the states where the most
        tokens end, and so on. Stops after ``seconds`` of this thread's CPU time (a busy machine
        does not cut it short). Only speed changes; returns how many runs were built.
        """
        import time
        from collections import deque

        deadline = time.thread_time() + seconds
        ctxs = range(len(self._ctx_terms))
        todo = deque([(c, START, k) for k in (0, 1) for c in ctxs])
        seen = set(todo)
        built = 0
        while todo and time.thread_time() < deadline:
            c, q, k = todo.popleft()
            if (c, q, k) not in self._roots:
                built += 1
            node = self._root(c, q, k)
            states, counts = np.unique(node.end[node.end > START], return_counts=True)
            for q2 in states[np.argsort(-counts, kind="stable")].tolist():
                if (c, q2, 0) not in seen:
                    seen.add((c, q2, 0))
                    todo.append((c, q2, 0))
        return built

    @cached_property
    def completer(self) -> Any:
        """Shortest completions of viable prefixes (:class:`~decoding.grammar.completion.Completer`), built once."""
        from decoding.grammar.completion import Completer

        return Completer(self)

    def constraint(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        *,
        max_tokens: int | None = None,
        reserve: int = 16,
    ) -> Any:
        """A :class:`~decoding.grammar.constraint.GrammarConstraint` with one matcher per row.

        Args:
            batch_size: rows ``B``.
            device: where masks are returned.
            max_tokens: the rows' token budget (EOS included). When given, the last ``reserve``
                tokens before the budget runs out only allow tokens after which the text can still
                be completed in time (:class:`~decoding.grammar.budget.BudgetGuard`), so every row
                ends with a sentence of the grammar. ``None``: rows may stop incomplete.
            reserve: see :class:`~decoding.grammar.budget.BudgetGuard`.
        """
        from decoding.grammar.constraint import GrammarConstraint

        return GrammarConstraint(self, batch_size, device=device, max_tokens=max_tokens, reserve=reserve)

    def matcher(self) -> Any:
        """A fresh single-sequence :class:`~decoding.grammar.matcher.GrammarMatcher`."""
        from decoding.grammar.matcher import GrammarMatcher

        return GrammarMatcher(self)


def compile_grammar(
    grammar: str | Path,
    tokenizer: Any,
    eos_token_id: int | None = None,
    *,
    vocab_size: int | None = None,
    start: str = "start",
    mask_cache_size: int = 4096,
    warm_seconds: float = 1.5,
    check_lexer: bool = True,
) -> CompiledGrammar:
    """Compile a lark grammar against a tokenizer.

    Args:
        grammar: a built-in name (``json``, ``arithmetic``, ...), a path to a ``.lark`` file or lark text.
        tokenizer: a Hugging Face tokenizer, a :class:`~decoding.tokenizers.Vocabulary`,
            a :class:`~decoding.tokenizers.Gpt2Tokenizer` or a list of token bytes.
        eos_token_id: the id allowed exactly when the text is complete (default: the tokenizer's).
        vocab_size: the model's logits width if larger than the tokenizer (extra ids are never allowed).
        start: the start rule.
        mask_cache_size: number of ``(V,)`` masks kept in the cache.
        warm_seconds: time spent precomputing lexer-state tables (see :meth:`CompiledGrammar.warm_up`).
        check_lexer: refuse grammars whose texts lark's own first-match lexer would lex differently
            (:func:`~decoding.grammar.lexer_order.check_lexer_order`); ``False`` for grammars whose
            oracle is not lark (the JSON Schema path).

    Raises:
        GrammarError: malformed grammar (lark's message, with line and column), a grammar that is
            not LALR(1), an unsupported terminal, a start rule that can never complete, or (with
            ``check_lexer``) terminals that lark's lexer, trying them in order, would lex differently.
    """
    from decoding.grammar.checks import check_completable, check_terminals_defined, load_lark
    from decoding.grammar.lexer_order import check_lexer_order

    source, name = grammar_source(grammar)
    lark_grammar = load_lark(source, name, start)
    check_terminals_defined(lark_grammar)
    check_completable(lark_grammar, start)
    vocab = vocabulary(tokenizer, eos_token_id, vocab_size)
    if vocab.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: pass eos_token_id")
    compiled = CompiledGrammar(lark_grammar, vocab, name, mask_cache_size)
    if check_lexer:
        check_lexer_order(compiled)
    if warm_seconds > 0:
        compiled.warm_up(warm_seconds)
    return compiled
