"""``$ref`` resolution inside one schema document: JSON pointers, ``$id`` bases, anchors.

The document is walked once through the keywords that hold subschemas. Every subschema that sets
``$id`` (``id`` in draft 4) starts a new base URI; ``$anchor`` and plain-name fragment ids
(``"$id": "#foo"``) are registered under their base. A reference is resolved against the base of
the schema that holds it (RFC 3986), then looked up as a registered URI, or as a JSON pointer into
the document (or embedded resource) it names. Remote documents are not fetched: such a reference
is an error naming it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

ROOT_URI = "urn:decoding:root"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

# keywords whose value is a subschema, a list of subschemas, or a map of them
SCHEMA_KEYWORDS = {
    "additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if", "then", "else",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
}  # fmt: skip
LIST_KEYWORDS = {"allOf", "anyOf", "oneOf", "prefixItems"}
MAP_KEYWORDS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}


class RefError(ValueError):
    """A ``$ref`` that cannot be resolved inside the document."""


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (URNs and other non-hierarchical bases included)."""
    if _SCHEME.match(ref):
        return ref
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    if base.startswith("urn:"):
        return ref if not ref else urldefrag(base)[0] + "/" + ref
    return urljoin(base, ref)


def subschemas(schema: dict, draft: int) -> list[tuple[str, Any]]:
    """``(pointer suffix, subschema)`` for every direct subschema of ``schema``."""
    out = []
    for k, v in schema.items():
        if k in SCHEMA_KEYWORDS or (k == "items" and not isinstance(v, list)):
            out.append((f"/{k}", v))
        elif k in LIST_KEYWORDS or (k == "items" and isinstance(v, list)):
            if isinstance(v, list):
                out.extend((f"/{k}/{i}", s) for i, s in enumerate(v))
        elif k in MAP_KEYWORDS or (k == "dependencies" and isinstance(v, dict)):
            if isinstance(v, dict):
                out.extend((f"/{k}/{_escape(n)}", s) for n, s in v.items() if isinstance(s, (dict, bool)))
    return out


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


class Resolver:
    """Resolves references of one document.

    Args:
        root: the schema document.
        draft: 4, 6, 7, 2019 or 2020 (how ``id``/``$id`` and anchors are read).
    """

    def __init__(self, root: Any, draft: int) -> None:
        self.root = root
        self.draft = draft
        self.by_uri: dict[str, tuple[Any, str]] = {}
        self.base_of: dict[int, str] = {}
        self._walk(root, ROOT_URI, root_level=True)

    def _id_of(self, schema: dict) -> str | None:
        key = "id" if self.draft <= 4 else "$id"
        v = schema.get(key)
        if not isinstance(v, str):
            return None
        if self.draft <= 7 and "$ref" in schema:
            return None  # siblings of $ref are ignored before 2019-09
        return v

    def _walk(self, schema: Any, base: str, root_level: bool = False) -> None:
        if not isinstance(schema, dict):
            return
        sid = self._id_of(schema)
        if sid is not None:
            if sid.startswith("#") and self.draft <= 7:
                self.by_uri[join(base, sid)] = (schema, base)
            else:
                base = join(base, sid)
                self.by_uri.setdefault(urldefrag(base)[0], (schema, urldefrag(base)[0]))
        if root_level:
            self.by_uri.setdefault(ROOT_URI, (schema, base))
        self.base_of[id(schema)] = base
        for key in ("$anchor", "$dynamicAnchor"):
            anchor = schema.get(key)
            if isinstance(anchor, str):
                self.by_uri.setdefault(urldefrag(base)[0] + "#" + anchor, (schema, base))
        if self.draft <= 7 and "$ref" in schema:
            return
        for _, sub in subschemas(schema, self.draft):
            self._walk(sub, base)

    def base(self, schema: Any, default: str) -> str:
        """The base URI in effect inside ``schema`` (``default`` if it was not walked)."""
        return self.base_of.get(id(schema), default)

    def resolve(self, ref: str, base: str) -> tuple[Any, str]:
        """``(target schema, its base URI)`` for ``ref`` found in a schema with base ``base``."""
        if not isinstance(ref, str):
            raise RefError(f"$ref must be a string, got {ref!r}")
        uri = join(base, ref)
        doc_uri, frag = urldefrag(uri)
        if uri in self.by_uri and frag and not frag.startswith("/"):
            return self.by_uri[uri]
        doc = self.by_uri.get(doc_uri)
        if doc is None:
            if doc_uri == urldefrag(ROOT_URI)[0] or not doc_uri:
                doc = self.by_uri[ROOT_URI]
            else:
                raise RefError(f"$ref {ref!r} points outside the schema document ({doc_uri}); remote references are not fetched")
        target, tbase = doc
        if not frag:
            return target, tbase
        if not frag.startswith("/"):
            raise RefError(f"$ref {ref!r}: no anchor {frag!r} in {doc_uri}")
        for raw in frag[1:].split("/"):
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise RefError(f"$ref {ref!r}: the pointer {frag!r} does not exist in the document")
            if isinstance(target, dict):
                tbase = self.base_of.get(id(target), tbase)
        return target, tbase
