"""``format`` values as regular languages (sound: each is a subset of the valid strings).

Each language is contained in what the RFC allows *and* in what Python ``jsonschema``'s format
checker accepts, so restricting to it never admits an invalid string. Some are strict subsets
(documented per format), e.g. no leap seconds in times, no ``\\uXXXX``-style exotic e-mail local
parts, no IPv6 zone ids, bounded label counts for host names.

Formats that no JSON Schema draft defines (``int32``, ``binary``, ...) are annotations: validators
ignore them, and so does the converter (:data:`KNOWN` lists the ones enforced).
"""

from __future__ import annotations

from functools import cache

from decoding.grammar.json_schema.ecma import pattern_language
from decoding.grammar.json_schema.regex_ast import Node

_DIGIT2 = r"[0-9]{2}"
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_OFFSET = r"(?:[Zz]|[+\-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_TIME = rf"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?{_OFFSET}"
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR_DATE = r"(?:[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)"
_DURATION = rf"P(?:[0-9]+W|{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME})"

_A = "[A-Za-z0-9]"
_X = "[A-Za-z0-9-]"
# a host-name label: 1..63 letters, digits, hyphens; no hyphen first or last; not '--' at 3-4 (IDNA)
_LABEL63 = rf"(?:{_A}|{_A}{_A}|{_A}{_X}{_A}|{_A}{_X}{_X}{_A}|{_A}{_X}(?:{_A}{_X}|-{_A}){_X}{{0,58}}{_A})"
_LABEL30 = rf"(?:{_A}|{_A}{_A}|{_A}{_X}{_A}|{_A}{_X}{_X}{_A}|{_A}{_X}(?:{_A}{_X}|-{_A}){_X}{{0,25}}{_A})"
# at most 253 characters: up to 3 labels of 63, or up to 8 labels of 30
_HOSTNAME = rf"(?:{_LABEL63}(?:\.{_LABEL63}){{0,2}}|{_LABEL30}(?:\.{_LABEL30}){{0,7}})"
_LOWER_A = "[a-z0-9]"
_LOWER_X = "[a-z0-9-]"
_IDN_LABEL = (
    rf"(?:{_LOWER_A}|{_LOWER_A}{_LOWER_A}|{_LOWER_A}{_LOWER_X}{_LOWER_A}|{_LOWER_A}{_LOWER_X}{_LOWER_X}{_LOWER_A}"
    rf"|{_LOWER_A}{_LOWER_X}(?:{_LOWER_A}{_LOWER_X}|-{_LOWER_A}){_LOWER_X}{{0,25}}{_LOWER_A})"
)
_IDN_HOSTNAME = rf"{_IDN_LABEL}(?:\.{_IDN_LABEL}){{0,7}}"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]"
_EMAIL = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL30}(?:\.{_LABEL30}){{0,7}}"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = "(?:" + "|".join(
    [
        rf"(?:{_H16}:){{6}}{_LS32}",
        rf"::(?:{_H16}:){{5}}{_LS32}",
        rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    ]
) + ")"
_HEX = "[0-9A-Fa-f]"
_UUID = rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"

# RFC 3986, ASCII only
_UNRESERVED = r"[A-Za-z0-9\-._~]"
_PCT = r"%[0-9A-Fa-f]{2}"
_SUB = r"[!$&'()*+,;=]"
_PCHAR = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB}|[:@])"
_USERINFO = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB}|:)*"
_REG_NAME = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB})*"
_HOST = rf"(?:\[{_IPV6}\]|{_IPV4}|{_REG_NAME})"
_AUTHORITY = rf"(?:{_USERINFO}@)?{_HOST}(?::[0-9]*)?"
_SEGMENT = rf"{_PCHAR}*"
_SEGMENT_NZ = rf"{_PCHAR}+"
_PATH_ABEMPTY = rf"(?:/{_SEGMENT})*"
_PATH_ABSOLUTE = rf"/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
_PATH_ROOTLESS = rf"{_SEGMENT_NZ}(?:/{_SEGMENT})*"
_SEGMENT_NZ_NC = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB}|@)+"
_PATH_NOSCHEME = rf"{_SEGMENT_NZ_NC}(?:/{_SEGMENT})*"
_QUERY = rf"(?:{_PCHAR}|[/?])*"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_HIER = rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_ROOTLESS}|)"
_URI = rf"{_SCHEME}:{_HIER}(?:\?{_QUERY})?(?:#{_QUERY})?"
_RELATIVE = rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_NOSCHEME}|)(?:\?{_QUERY})?(?:#{_QUERY})?"
_URI_REFERENCE = rf"(?:{_URI}|{_RELATIVE})"
# RFC 6570: literals and simple expressions {op? var(:n|*)?(,var...)*}
_TPL_LITERAL = r"(?:[!#$&()*+,\-./0-9:;=?@A-Z\[\]_a-z~]|%[0-9A-Fa-f]{2})"
_VARNAME = r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*"
_VARSPEC = rf"{_VARNAME}(?::[1-9][0-9]{{0,3}}|\*)?"
_URI_TEMPLATE = rf"(?:{_TPL_LITERAL}|\{{[+#./;?&]?{_VARSPEC}(?:,{_VARSPEC})*\}})*"
_POINTER = r"(?:/(?:[^~/]|~[01])*)*"
_RELATIVE_POINTER = rf"(?:0|[1-9][0-9]*)(?:#|{_POINTER})"
# a regular subset of the expressions both ECMA-262 and Python accept: literals, escapes,
# simple classes, '.', one quantifier per atom, optional ^ and $ at the ends
_RX_ATOM = r"(?:[^\\^$.|?*+()\[\]{}]|\\[dDwWsS\\^$.|?*+()\[\]{}/]|\.|\[\^?(?:[^\]\\\[\-^]|\\[\\\]\[dDwWs\-^]|a-z|A-Z|0-9)+\])"
_RX_QUANT = r"(?:[*+?]|\{[0-9]{1,3}\}|\{[0-9]{1,3},\})"
_REGEX = rf"\^?(?:{_RX_ATOM}{_RX_QUANT}?)*\$?"

SOURCES = {
    "date": _DATE,
    "time": _TIME,
    "date-time": rf"{_DATE}[Tt]{_TIME}",
    "duration": _DURATION,
    "email": _EMAIL,
    "idn-email": _EMAIL,
    "hostname": _HOSTNAME,
    "idn-hostname": _IDN_HOSTNAME,
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "uri": _URI,
    "iri": _URI,
    "uri-reference": _URI_REFERENCE,
    "iri-reference": _URI_REFERENCE,
    "uri-template": _URI_TEMPLATE,
    "uuid": _UUID,
    "json-pointer": _POINTER,
    "relative-json-pointer": _RELATIVE_POINTER,
    "regex": _REGEX,
}
KNOWN = frozenset(SOURCES)


@cache
def format_language(name: str) -> Node | None:
    """The strings of format ``name`` (a tree), or ``None`` for a format no draft defines (ignored)."""
    src = SOURCES.get(name)
    return None if src is None else pattern_language("^(?:" + src + ")$")
