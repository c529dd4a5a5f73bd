"""JSON Schema -> lark grammar (LALR(1)) for the common keywords.

Supported: ``type`` (one or a list), ``properties`` + ``required`` (keys in the order given;
other keys are not allowed), ``additionalProperties: false``, ``items``, ``minItems``,
``maxItems``, ``enum``, ``const``, ``minLength``, ``maxLength``, ``pattern`` (a full match of the
string's characters; no quotes, backslashes or control characters), ``anyOf``, and the
annotations ``title``, ``description``, ``default``, ``examples``, ``$schema``, ``$id``.
Anything else raises a ``ValueError`` that names the keyword.
"""

from __future__ import annotations

import json
import re
from typing import Any

_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})'
_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment"}
_KNOWN = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "anyOf",
} | _ANNOTATIONS
_MAX_EXPANSION = 1000

_BASE = r"""
json_value: json_object | json_array | STRING | NUMBER | "true" | "false" | "null"
json_object: "{" [json_pair ("," json_pair)*] "}"
json_pair: STRING ":" json_value
json_array: "[" [json_value ("," json_value)*] "]"
STRING: /"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/
NUMBER: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/
INTEGER: /-?(?:0|[1-9][0-9]*)/
WS: /[ \t\n\r]+/
%ignore WS
"""


def _regex_literal(text: str) -> str:
    """A lark regex terminal body matching ``text`` exactly."""
    return "/" + re.escape(text).replace("/", "\\/") + "/"


class _Builder:
    def __init__(self) -> None:
        self.rules: list[str] = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"s_{re.sub(r'[^a-z0-9_]', '_', hint.lower())[:30]}_{self.count}"

    def add(self, name: str, body: str) -> str:
        self.rules.append(f"{name}: {body}")
        return name

    def schema(self, s: Any, path: str) -> str:
        """Rule name for schema ``s`` (``path`` locates it in error messages)."""
        if s is True or s == {}:
            return "json_value"
        if not isinstance(s, dict):
            raise ValueError(f"schema at {path} must be an object or true, got {s!r}")
        unknown = sorted(set(s) - _KNOWN)
        if unknown:
            raise ValueError(
                f"unsupported JSON Schema keyword(s) {unknown} at {path}; supported: {sorted(_KNOWN - _ANNOTATIONS)}"
            )
        name = self.fresh(path.rsplit("/", 1)[-1] or "root")
        if "const" in s:
            return self.add(name, _regex_literal(json.dumps(s["const"])))
        if "enum" in s:
            vals = s["enum"]
            if not isinstance(vals, list) or not vals:
                raise ValueError(f"enum at {path} must be a non-empty list")
            return self.add(name, " | ".join(_regex_literal(json.dumps(v)) for v in vals))
        if "anyOf" in s:
            alts = [self.schema(sub, f"{path}/anyOf/{i}") for i, sub in enumerate(s["anyOf"])]
            return self.add(name, " | ".join(alts))
        types = s.get("type")
        if types is None:
            if "properties" in s:
                types = "object"
            elif "items" in s:
                types = "array"
            else:
                return "json_value"
        if isinstance(types, list):
            alts = [self.schema({**s, "type": t}, f"{path}/{t}") for t in types]
            return self.add(name, " | ".join(alts))
        if types == "object":
            return self.object(s, name, path)
        if types == "array":
            return self.array(s, name, path)
        if types == "string":
            return self.string(s, name, path)
        if types == "number":
            return self.add(name, "NUMBER")
        if types == "integer":
            return self.add(name, "INTEGER")
        if types == "boolean":
            return self.add(name, '"true" | "false"')
        if types == "null":
            return self.add(name, '"null"')
        raise ValueError(f"unknown type {types!r} at {path}")

    def object(self, s: dict, name: str, path: str) -> str:
        props = s.get("properties", {})
        extra = s.get("additionalProperties", False)
        if extra is not False:
            raise ValueError(
                f"additionalProperties other than false is not supported at {path}: objects allow exactly "
                "the listed properties"
            )
        if not props:
            return self.add(name, '"{" "}"')
        required = set(s.get("required", []))
        missing = required - set(props)
        if missing:
            raise ValueError(f"required properties {sorted(missing)} at {path} are not in 'properties'")
        keys = list(props)
        pairs = []
        for k in keys:
            value = self.schema(props[k], f"{path}/{k}")
            pairs.append(self.add(self.fresh(f"{k}_pair"), f'{_regex_literal(json.dumps(k))} ":" {value}'))
        # F_i: a non-empty run of members from key i on, first one without a comma;
        # R_i: the same with a leading comma. A run may stop only when no required key is left.
        n = len(keys)
        first = [self.fresh(f"{name}_first") for _ in range(n)]
        rest = [self.fresh(f"{name}_rest") for _ in range(n)]
        for i in range(n - 1, -1, -1):
            later_required = any(k in required for k in keys[i + 1 :])
            tail = "" if i == n - 1 else (f" {rest[i + 1]}" if later_required else f" [{rest[i + 1]}]")
            skip = keys[i] not in required and i < n - 1
            self.add(first[i], f"{pairs[i]}{tail}" + (f" | {first[i + 1]}" if skip else ""))
            self.add(rest[i], f'"," {pairs[i]}{tail}' + (f" | {rest[i + 1]}" if skip else ""))
        body = first[0] if required else f"[{first[0]}]"
        return self.add(name, f'"{{" {body} "}}"')

    def array(self, s: dict, name: str, path: str) -> str:
        item = self.schema(s.get("items", True), f"{path}/items")
        lo = int(s.get("minItems", 0))
        hi = s.get("maxItems")
        if lo < 0 or (hi is not None and (int(hi) < lo)):
            raise ValueError(f"minItems/maxItems at {path} must satisfy 0 <= minItems <= maxItems")
        if max(lo, int(hi or 0)) > _MAX_EXPANSION:
            raise ValueError(f"minItems/maxItems at {path} above {_MAX_EXPANSION} are not supported")
        if hi is not None and int(hi) == 0:
            return self.add(name, '"[" "]"')
        first = max(lo, 1)
        body = " ".join([item] + [f'"," {item}'] * (first - 1))
        if hi is None:
            body += f' ("," {item})*'
        else:
            tail = ""
            for _ in range(int(hi) - first):
                tail = f'["," {item} {tail}]'.replace(" ]", "]")
            body += f" {tail}" if tail else ""
        return self.add(name, f'"[" {body} "]"' if lo >= 1 else f'"[" [{body}] "]"')

    def string(self, s: dict, name: str, path: str) -> str:
        if "pattern" in s:
            pat = s["pattern"]
            if not isinstance(pat, str):
                raise ValueError(f"pattern at {path} must be a string")
            core = pat[1:] if pat.startswith("^") else pat
            core = core[:-1] if core.endswith("$") and not core.endswith("\\$") else core
            if any(x in s for x in ("minLength", "maxLength")):
                raise ValueError(f"pattern together with minLength/maxLength at {path} is not supported")
            from decoding.grammar.regex_bytes import ByteNFA, RegexError

            try:
                ByteNFA().add_regex(core)
            except RegexError as e:
                raise ValueError(f"pattern {pat!r} at {path} is not supported: {e}") from e
            if re.search(r'"|\\\\|\\x00|\\n', core):
                raise ValueError(
                    f"pattern {pat!r} at {path} may match quotes, backslashes or control characters"
                )
            return self.add(name, '/"(?:' + core.replace("/", "\\/") + ')"/')
        lo = int(s.get("minLength", 0))
        hi = s.get("maxLength")
        if "minLength" not in s and hi is None:
            return self.add(name, "STRING")
        if max(lo, int(hi or 0)) > _MAX_EXPANSION:
            raise ValueError(f"minLength/maxLength at {path} above {_MAX_EXPANSION} are not supported")
        rep = f"{{{lo},}}" if hi is None else f"{{{lo},{int(hi)}}}"
        return self.add(name, '/"' + _CHAR + rep + '"/')


def json_schema_to_lark(schema: dict | str) -> str:
    """A lark grammar (text) whose sentences are the JSON documents valid under ``schema``.

    Args:
        schema: a JSON Schema as a dict or JSON text.

    Raises:
        ValueError: naming the unsupported keyword (and its location) or the malformed part.
    """
    if isinstance(schema, str):
        schema = json.loads(schema)
    b = _Builder()
    root = b.schema(schema, "#")
    return f"start: {root}\n" + "\n".join(b.rules) + "\n" + _BASE
