"""A slow, exact oracle for grammar masks: lark's interactive parser, one character at a time.

It implements the constraint's semantics independently of the fast path (no byte DFA, no
interned stacks): terminals are matched with the ``regex`` module's partial matching, and the
parser is lark's own ``InteractiveParser`` (``choices``, ``accepts``, ``feed_token``).

* lexer context: the terminals in lark's table row of the current state plus ``%ignore``;
* a character that some context terminal can still use extends the open lexeme;
* otherwise the lexeme must fully match a terminal the parser accepts (or an ignored one), chosen
  by (priority, string before regex, larger max width, longer pattern, name), and the character
  starts the next lexeme;
* viable: the open lexeme is a prefix of a terminal the parser accepts (or an ignored one).

Bytes that end inside a UTF-8 character are judged by trying representative characters that
start with those bytes (the smallest, the largest and a few between): exact for grammars whose
character classes treat every non-ASCII character of one UTF-8 length alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import regex
from lark import Token


@lru_cache(maxsize=1)
def _representatives() -> dict[bytes, list[str]]:
    """UTF-8 prefix (1-3 bytes of a longer character) -> up to 6 characters starting with it."""
    groups: dict[bytes, list[int]] = {}
    for cp in range(0x80, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        enc = chr(cp).encode("utf-8")
        for k in range(1, len(enc)):
            groups.setdefault(enc[:k], []).append(cp)
    out = {}
    for pre, cps in groups.items():
        picks = sorted({cps[0], cps[-1], cps[len(cps) // 2], cps[len(cps) // 3], cps[(2 * len(cps)) // 3]})
        out[pre] = [chr(c) for c in picks]
    return out


@dataclass
class _Cfg:
    ip: Any  # lark InteractiveParser (never mutated once stored)
    lex: str
    dead: bool = False


class Oracle:
    """Exact but slow: is a byte string a viable prefix / a sentence of a lark LALR grammar?"""

    def __init__(self, lark_grammar: Any) -> None:
        self.lark = lark_grammar
        conf = lark_grammar.lexer_conf
        self.terms = {t.name: t for t in conf.terminals}
        self.ignore = set(conf.ignore)
        self.pat = {n: regex.compile(t.pattern.to_regexp()) for n, t in self.terms.items()}
        self._acc: dict[tuple, frozenset[str]] = {}

    def _rank(self, name: str) -> tuple:
        t = self.terms[name]
        return (
            -t.priority,
            0 if type(t.pattern).__name__ == "PatternStr" else 1,
            -t.pattern.max_width,
            -len(t.pattern.value),
            name,
        )

    def _key(self, ip: Any) -> tuple:
        return tuple(ip.parser_state.state_stack)

    def _ctx(self, ip: Any) -> set[str]:
        return {k for k in ip.choices() if k in self.terms} | self.ignore

    def _accepts(self, ip: Any) -> frozenset[str]:
        k = self._key(ip)
        if k not in self._acc:
            self._acc[k] = frozenset(ip.accepts())
        return self._acc[k]

    def _ok(self, ip: Any) -> set[str]:
        return (set(self._accepts(ip)) - {"$END"}) | self.ignore

    def _partial(self, name: str, s: str) -> bool:
        return self.pat[name].fullmatch(s, partial=True) is not None

    def _full(self, name: str, s: str) -> bool:
        m = self.pat[name].fullmatch(s)
        return m is not None

    def initial(self) -> _Cfg:
        return _Cfg(self.lark.parse_interactive(""), "")

    def _close(self, cfg: _Cfg) -> Any | None:
        """Parser after feeding the open lexeme's terminal; None if it fits none."""
        ok = self._ok(cfg.ip)
        cands = sorted((t for t in self._ctx(cfg.ip) if t in ok and self._full(t, cfg.lex)), key=self._rank)
        if not cands:
            return None
        ip = cfg.ip
        if cands[0] not in self.ignore:
            ip = ip.copy(deepcopy_values=False)
            ip.feed_token(Token(cands[0], cfg.lex))
        return ip

    def step_char(self, cfg: _Cfg, c: str) -> _Cfg:
        if cfg.dead:
            return cfg
        new = cfg.lex + c
        if any(self._partial(t, new) for t in self._ctx(cfg.ip)):
            return _Cfg(cfg.ip, new)
        if not cfg.lex:
            return _Cfg(cfg.ip, cfg.lex, True)
        ip = self._close(cfg)
        if ip is None or not any(self._partial(t, c) for t in self._ctx(ip)):
            return _Cfg(cfg.ip, cfg.lex, True)
        return _Cfg(ip, c)

    def feed_text(self, cfg: _Cfg, text: str) -> _Cfg:
        for c in text:
            cfg = self.step_char(cfg, c)
            if cfg.dead:
                break
        return cfg

    def viable_cfg(self, cfg: _Cfg) -> bool:
        if cfg.dead:
            return False
        return not cfg.lex or any(self._partial(t, cfg.lex) for t in self._ok(cfg.ip))

    def complete_cfg(self, cfg: _Cfg) -> bool:
        if cfg.dead:
            return False
        if not cfg.lex:
            return "$END" in self._accepts(cfg.ip)
        ip = self._close(cfg)
        return ip is not None and "$END" in self._accepts(ip)

    # --- bytes -----------------------------------------------------------------------------
    def feed_bytes(self, cfg: _Cfg, pending: bytes, data: bytes) -> tuple[_Cfg, bytes] | None:
        """Feed ``data`` after ``pending`` (an unfinished UTF-8 character); None on invalid UTF-8."""
        buf = pending + data
        cut = len(buf)
        for k in range(1, min(4, len(buf)) + 1):  # an unfinished character at the end?
            lead = buf[-k]
            need = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 0
            if need:
                if need > k:
                    cut = len(buf) - k
                break
            if lead < 0x80:
                break
        try:
            text = buf[:cut].decode("utf-8")
        except UnicodeDecodeError:
            return None
        tail = buf[cut:]
        if tail and tail not in _representatives():
            return None
        return self.feed_text(cfg, text), tail

    def viable(self, cfg: _Cfg, pending: bytes) -> bool:
        if not pending:
            return self.viable_cfg(cfg)
        return any(self.viable_cfg(self.step_char(cfg, c)) for c in _representatives()[pending])

    def token_allowed(self, cfg: _Cfg, pending: bytes, data: bytes) -> bool:
        out = self.feed_bytes(cfg, pending, data)
        return out is not None and self.viable(*out)

    def is_sentence(self, text: bytes) -> bool:
        out = self.feed_bytes(self.initial(), b"", text)
        return out is not None and not out[1] and self.complete_cfg(out[0])
