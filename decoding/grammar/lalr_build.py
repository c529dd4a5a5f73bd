"""LALR(1) parse tables from BNF rules: the LR(0) automaton, then DeRemer-Pennello lookaheads.

DeRemer & Pennello, "Efficient Computation of LALR(1) Look-Ahead Sets", TOPLAS 4(4), 1982:
for every nonterminal transition ``(p, A)``, ``Read(p, A)`` is the union of the terminals read
directly after ``A`` and, through nullable nonterminals, further on (relation *reads*);
``Follow(p, A)`` adds the ``Follow`` sets of the transitions ``A`` completes at the end of a
rule (relation *includes*); a reduction by ``A -> w`` in state ``q`` gets the union of
``Follow(p, A)`` over the transitions it looks back to (``p --w--> q``). Both unions are
transitive closures, computed once per strongly connected component (Tarjan 1972).

The table is the one lark 1.3 builds for the same rules (:mod:`lark.parsers.lalr_analysis`),
state for state, so a grammar compiled from these tables lexes and parses exactly as one
compiled through lark: same LR(0) states, the same *includes* relation (lark also lets the items
of ``B`` past their first symbol in ``p`` contribute, which this builder reproduces), shift
preferred in a shift/reduce conflict, and an error on a reduce/reduce conflict. Symbols are
``int`` and terminal sets are ``int`` bitmasks, which is what makes it fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from decoding.grammar.spec import END, ParseTable


class LalrConflict(ValueError):
    """Two rules reduce on the same lookahead (the grammar is not LALR(1))."""


def build_lalr(
    rules: Sequence[tuple[str, tuple[str, ...]]], terminals: Sequence[str], start: str
) -> ParseTable:
    """The LALR(1) table of ``rules`` with start rule ``start``.

    Args:
        rules: ``(origin, expansion)`` pairs (symbol names); reductions in the table index this list.
        terminals: names of the terminal symbols (every other symbol must be some rule's origin).
        start: the start nonterminal.

    Raises:
        LalrConflict: a reduce/reduce conflict (names the lookahead and the rules).
        ValueError: a symbol that is neither a terminal nor defined by a rule, or an unknown start.
    """
    return _Builder(rules, terminals, start).table()


class _Builder:
    def __init__(
        self, rules: Sequence[tuple[str, tuple[str, ...]]], terminals: Sequence[str], start: str
    ) -> None:
        term_names = [*dict.fromkeys(terminals)]
        if END not in term_names:
            term_names.append(END)
        self.names: list[str] = term_names
        sym: dict[str, int] = {n: i for i, n in enumerate(term_names)}
        self.n_terms = nt0 = len(term_names)
        for origin, _ in rules:
            if origin not in sym:
                sym[origin] = len(self.names)
                self.names.append(origin)
        if start not in sym or sym[start] < nt0:
            raise ValueError(f"the start symbol {start!r} is not defined by any rule")
        root = len(self.names)
        self.names.append("$root_" + start)
        lhs: list[int] = []
        rhs: list[tuple[int, ...]] = []
        get = sym.__getitem__
        try:
            for origin, expansion in rules:
                rhs.append(tuple(map(get, expansion)))
                lhs.append(sym[origin])
        except KeyError as e:
            raise ValueError(f"rule {origin!r} uses the undefined symbol {e.args[0]!r}") from None
        self.root_rule = len(rhs)
        lhs.append(root)
        rhs.append((sym[start],))
        self.lhs, self.rhs = lhs, rhs
        self.start_sym = sym[start]
        # items: base[r] + dot; item_sym[i] is the symbol after the dot, or -1 when complete
        base: list[int] = []
        item_sym: list[int] = []
        item_rule: list[int] = []
        for r, w in enumerate(rhs):
            base.append(len(item_sym))
            item_sym.extend(w)
            item_sym.append(-1)
            item_rule.extend([r] * (len(w) + 1))
        self.base, self.item_sym, self.item_rule = base, item_sym, item_rule
        n_syms = len(self.names)
        self.by_origin: list[list[int]] = [[] for _ in range(n_syms)]
        for r, a in enumerate(lhs):
            self.by_origin[a].append(r)
        self.nullable = self._nullable()

    def _nullable(self) -> list[bool]:
        nullable = [False] * len(self.names)
        users: dict[int, list[int]] = {}
        left = []
        for r, w in enumerate(self.rhs):
            left.append(len(w))
            for s in w:
                users.setdefault(s, []).append(r)
        todo = [r for r, w in enumerate(self.rhs) if not w]
        while todo:
            a = self.lhs[todo.pop()]
            if nullable[a]:
                continue
            nullable[a] = True
            for r in users.get(a, ()):
                left[r] -= 1
                if left[r] == 0:
                    todo.append(r)
        return nullable

    # --- LR(0) ----------------------------------------------------------------------------------
    def _closure_moves(self, nts: frozenset[int]) -> tuple[dict[int, list[int]], list[int]]:
        """For the nonterminals after the dots of a kernel: the closure items grouped by the
        symbol after their dot (advanced past it), and the empty rules among them."""
        seen = set(nts)
        todo = list(nts)
        base, rhs, by_origin, nt0 = self.base, self.rhs, self.by_origin, self.n_terms
        moves: dict[int, list[int]] = {}
        empty: list[int] = []
        while todo:
            a = todo.pop()
            for r in by_origin[a]:
                w = rhs[r]
                if not w:
                    empty.append(r)
                    continue
                x = w[0]
                moves.setdefault(x, []).append(base[r] + 1)
                if x >= nt0 and x not in seen:
                    seen.add(x)
                    todo.append(x)
        return moves, empty

    def _lr0(self) -> None:
        """The LR(0) states (kernels), their transitions and complete rules; also numbers the
        nonterminal transitions ``(p, A)`` in the order of the states and their rows."""
        item_sym, item_rule, nt0 = self.item_sym, self.item_rule, self.n_terms
        first = (self.base[self.root_rule],)
        index: dict[tuple[int, ...], int] = {first: 0}
        kernels = [first]
        trans: list[dict[int, int]] = []
        reduces: list[list[int]] = []
        term_bits: list[int] = []  # per state: bitmask of the terminals it shifts
        nt_k: list[dict[int, int]] = []  # per state: nonterminal -> number of the transition (p, A)
        nt_list: list[tuple[int, int]] = []
        # nonterminals after the dots -> (symbol -> its closure items advanced, sorted; empty rules)
        memo: dict[frozenset[int], tuple[dict[int, tuple[int, ...]], list[int]]] = {}
        for i, kernel in enumerate(kernels):  # grows while it is walked
            groups: dict[int, list[int] | tuple[int, ...]] = {}  # lists: kernel items (to be sorted)
            red: list[int] = []
            # a set, not a list: _closure_moves walks the frozenset made from it, and a frozenset made
            # from a list may iterate the same members in another order (other state numbers than lark's)
            nts = set()
            for it in kernel:
                x = item_sym[it]
                if x < 0:
                    red.append(item_rule[it])
                    continue
                g = groups.get(x)
                if g is None:
                    groups[x] = [it + 1]
                    if x >= nt0:
                        nts.add(x)
                else:
                    g.append(it + 1)  # type: ignore[union-attr]
            if nts:
                key = frozenset(nts)
                cl = memo.get(key)
                if cl is None:
                    moves, empty = self._closure_moves(key)
                    cl = memo[key] = ({x: tuple(sorted(its)) for x, its in moves.items()}, empty)
                for x, its in cl[0].items():
                    g = groups.get(x)
                    if g is None:
                        groups[x] = its
                    else:
                        g.extend(its)  # type: ignore[union-attr]
                red.extend(cl[1])
            row: dict[int, int] = {}
            bits = 0
            ks: dict[int, int] = {}
            for x, its in groups.items():
                k = tuple(sorted(its)) if its.__class__ is list else its
                j = index.get(k)  # type: ignore[arg-type]
                if j is None:
                    j = index[k] = len(kernels)  # type: ignore[index]
                    kernels.append(k)  # type: ignore[arg-type]
                row[x] = j
                if x < nt0:
                    bits |= 1 << x
                else:
                    ks[x] = len(nt_list)
                    nt_list.append((i, x))
            trans.append(row)
            reduces.append(red)
            term_bits.append(bits)
            nt_k.append(ks)
        self.kernels, self.trans, self.reduces = kernels, trans, reduces
        self.term_bits, self.nt_k, self.nt_list = term_bits, nt_k, nt_list

    # --- DeRemer-Pennello -----------------------------------------------------------------------
    def _lookaheads(self) -> list[dict[int, int]]:
        """Per state: rule -> bitmask of lookahead terminals (reductions with no lookahead left out)."""
        trans, nt0, nullable = self.trans, self.n_terms, self.nullable
        rhs, lhs, by_origin, item_sym, item_rule, base = (
            self.rhs,
            self.lhs,
            self.by_origin,
            self.item_sym,
            self.item_rule,
            self.base,
        )
        term_bits, nt_k, nt_list = self.term_bits, self.nt_k, self.nt_list
        n = len(nt_list)
        direct = [0] * n
        reads: list[list[int]] = [[] for _ in range(n)]
        for k, (p, a) in enumerate(nt_list):
            r = trans[p][a]
            direct[k] = term_bits[r]
            for c, kc in nt_k[r].items():
                if nullable[c]:
                    reads[k].append(kc)
        root_k = nt_k[0].get(self.start_sym)
        if root_k is not None:  # the start symbol is followed by $END
            direct[root_k] |= 1 << self.names.index(END)
        includes: list[list[int]] = [[] for _ in range(n)]
        lookback: dict[tuple[int, int], list[int]] = {}
        # per rule: the index of the last symbol not followed by a nullable suffix only (from
        # there on every nonterminal's transition includes the rule's); -1 when all are nullable
        lim_of = []
        for w in rhs:
            t = len(w)
            while t > 0 and w[t - 1] >= nt0 and nullable[w[t - 1]]:
                t -= 1
            lim_of.append(t - 1 if t else 0)
        kernel_of = self.kernels
        for k, (p, b) in enumerate(nt_list):
            for r in by_origin[b]:
                w = rhs[r]
                q = p
                lim = lim_of[r]
                for x in w[:lim]:
                    q = trans[q][x]
                for x in w[lim:]:
                    if x >= nt0:
                        includes[nt_k[q][x]].append(k)
                    q = trans[q][x]
                key = (q, r)
                lb = lookback.get(key)
                if lb is None:
                    lookback[key] = [k]
                else:
                    lb.append(k)
            for it in kernel_of[p]:  # lark also walks B's items past their start (see the module docstring)
                r = item_rule[it]
                if lhs[r] != b:
                    continue
                d = it - base[r]
                if d > 0 and item_sym[it] >= 0:
                    w = rhs[r]
                    q = p
                    lim = lim_of[r]
                    for i in range(d, len(w)):
                        x = w[i]
                        if i >= lim and x >= nt0:
                            includes[nt_k[q][x]].append(k)
                        q = trans[q][x]
        read = _digraph(n, reads, direct)
        follow = _digraph(n, includes, read)
        out: list[dict[int, int]] = [{} for _ in trans]
        for (q, r), ks in lookback.items():
            bits = 0
            for k in ks:
                bits |= follow[k]
            if bits:
                out[q][r] = out[q].get(r, 0) | bits
        return out

    def table(self) -> ParseTable:
        self._lr0()
        la = self._lookaheads()
        names, lhs, rhs, term_bits = self.names, self.lhs, self.rhs, self.term_bits
        actions: list[dict[str, tuple]] = []
        conflicts = []
        shift = [("s", j) for j in range(len(self.trans))]  # one action tuple per target state / rule
        reduce: dict[int, tuple] = {}
        for q, row in enumerate(self.trans):
            acts: dict[str, tuple] = {names[x]: shift[j] for x, j in row.items()}
            shift_bits = term_bits[q]
            seen = 0
            for r, bits in la[q].items():
                clash = bits & seen
                if clash:
                    conflicts.append((q, clash, r))
                seen |= bits
                bits &= ~shift_bits  # shift/reduce: shift wins, as in lark
                red = reduce.get(r)
                if red is None:
                    red = reduce[r] = ("r", len(rhs[r]), names[lhs[r]], r)
                while bits:
                    low = bits & -bits
                    acts[names[low.bit_length() - 1]] = red
                    bits ^= low
            actions.append(acts)
        if conflicts:
            q, clash, _ = conflicts[0]
            t = (clash & -clash).bit_length() - 1
            rivals = [r for r, bits in la[q].items() if bits >> t & 1]
            shown = "".join(f"\n\t- {names[lhs[r]]}: {' '.join(names[s] for s in rhs[r])}" for r in rivals)
            raise LalrConflict(f"Reduce/Reduce collision in {names[t]} between the following rules: {shown}")
        end = self.trans[0].get(self.start_sym)
        if end is None:  # pragma: no cover - the root item always moves on the start symbol
            raise ValueError("no goto on the start symbol")
        return ParseTable(actions, 0, end)


def _digraph(n: int, rel: list[list[int]], base: list[int]) -> list[int]:
    """``F(x) = base(x) | F(y) for every y with x rel* y``, computed once per strongly connected
    component (DeRemer & Pennello's *digraph*, Tarjan's algorithm without recursion)."""
    f = list(base)
    mark = [0] * n  # 0: unvisited, >0: depth on the stack, -1: done
    stack: list[int] = []
    for x0 in range(n):
        if mark[x0]:
            continue
        stack.append(x0)
        mark[x0] = len(stack)
        frames = [[x0, len(stack), 0]]
        while frames:
            fr = frames[-1]
            x, d, i = fr
            ys = rel[x]
            if i < len(ys):
                y = ys[i]
                fr[2] = i + 1
                if mark[y] == 0:
                    stack.append(y)
                    mark[y] = len(stack)
                    frames.append([y, len(stack), 0])
                    continue
                if 0 < mark[y] < mark[x]:
                    mark[x] = mark[y]
                f[x] |= f[y]
                continue
            frames.pop()
            if mark[x] == d:
                fx = f[x]
                while True:
                    z = stack.pop()
                    mark[z] = -1
                    f[z] = fx
                    if z == x:
                        break
            if frames:
                p = frames[-1][0]
                if 0 < mark[x] < mark[p]:
                    mark[p] = mark[x]
                f[p] |= f[x]
    return f
