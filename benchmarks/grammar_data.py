"""Benchmark inputs for grammar masks: 20 realistic JSON documents and 20 arithmetic expressions.

Generated from a fixed seed (no downloads): API responses, configs, GeoJSON, logs, orders...
half compact (``json.dumps`` default separators), half indented, some with non-ASCII text.
"""

from __future__ import annotations

import json
import random

_NAMES = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Zoë Faure",
    "José Núñez",
    "Łukasz Wiśniewski",
    "李雷",
    "Anaïs",
]
_CITIES = ["Paris", "São Paulo", "Zürich", "Kraków", "Tokyo", "Reykjavík", "Montréal", "Nairobi"]
_WORDS = "alpha beta gamma delta error warning timeout retry cache user order invoice shipped pending".split()


def _user(r: random.Random) -> dict:
    name = r.choice(_NAMES)
    return {
        "id": r.randint(1, 10**6),
        "name": name,
        "email": name.split()[0].lower().encode("ascii", "ignore").decode() + "@example.com",
        "active": r.random() < 0.7,
        "roles": r.sample(["admin", "editor", "viewer", "billing"], r.randint(1, 3)),
        "address": {
            "city": r.choice(_CITIES),
            "zip": f"{r.randint(10000, 99999)}",
            "geo": [round(r.uniform(-90, 90), 6), round(r.uniform(-180, 180), 6)],
        },
        "last_login": None
        if r.random() < 0.3
        else f"2026-0{r.randint(1, 9)}-1{r.randint(0, 9)}T0{r.randint(0, 9)}:30:00Z",
    }


def _order(r: random.Random) -> dict:
    items = [
        {
            "sku": f"SKU-{r.randint(1000, 9999)}",
            "qty": r.randint(1, 5),
            "price": round(r.uniform(1, 250), 2),
            "tags": r.sample(_WORDS, 2),
        }
        for _ in range(r.randint(1, 4))
    ]
    return {
        "order_id": f"ORD-{r.randint(10**5, 10**6)}",
        "customer": _user(r),
        "items": items,
        "total": round(sum(i["qty"] * i["price"] for i in items), 2),
        "currency": r.choice(["EUR", "USD", "JPY"]),
        "status": r.choice(["pending", "shipped", "delivered"]),
        "notes": r.choice(
            ["", "Leave at the door.", "Fragile — handle with care", 'Gift: "Happy birthday!"']
        ),
    }


def _geojson(r: random.Random) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {
                    "type": "Point",
                    "coordinates": [round(r.uniform(-180, 180), 5), round(r.uniform(-90, 90), 5)],
                },
                "properties": {
                    "name": r.choice(_CITIES),
                    "population": r.randint(10**4, 10**7),
                    "capital": r.random() < 0.3,
                },
            }
            for _ in range(r.randint(1, 3))
        ],
    }


def _config(r: random.Random) -> dict:
    return {
        "version": f"{r.randint(1, 3)}.{r.randint(0, 20)}.{r.randint(0, 9)}",
        "debug": False,
        "server": {
            "host": "0.0.0.0",
            "port": r.choice([80, 443, 8080]),
            "workers": r.randint(1, 16),
            "timeout_s": 30.5,
        },
        "database": {"url": "postgres://db.internal:5432/app", "pool": {"min": 1, "max": r.randint(5, 50)}},
        "features": {w: r.random() < 0.5 for w in r.sample(_WORDS, 4)},
        "thresholds": [round(r.uniform(0, 1), 3) for _ in range(5)],
        "scientific": [1.5e-7, -2.25e10, 6.02e23],
    }


def _log(r: random.Random) -> dict:
    return {
        "ts": 1.7e9 + r.randint(0, 10**6),
        "level": r.choice(["INFO", "WARN", "ERROR"]),
        "msg": f"{r.choice(_WORDS)} while handling request\tid={r.randint(1, 999)}",
        "ctx": {
            "path": "/api/v2/orders",
            "method": "POST",
            "latency_ms": round(r.uniform(0.5, 900), 1),
            "retries": r.randint(0, 3),
        },
        "trace": [f"frame_{i}" for i in range(r.randint(0, 4))],
        "unicode": "naïve café — ✓ 日本語 🚀",
    }


def json_documents(n: int = 20, seed: int = 0) -> list[str]:
    """``n`` JSON texts (every fourth one indented by 2, the rest compact with ``', '``/``': '``)."""
    r = random.Random(seed)
    makers = [_user, _order, _geojson, _config, _log]
    out = []
    for i in range(n):
        doc = makers[i % len(makers)](r)
        out.append(json.dumps(doc, indent=2 if i % 4 == 3 else None, ensure_ascii=i % 3 != 0))
    return out


def _expr(r: random.Random, depth: int) -> str:
    if depth <= 0 or r.random() < 0.3:
        x = r.choice([str(r.randint(0, 999)), f"{r.randint(0, 99)}.{r.randint(0, 99)}"])
        return ("-" + x) if r.random() < 0.1 else x
    a, b = _expr(r, depth - 1), _expr(r, depth - 1)
    e = f"{a} {r.choice('+-*/')} {b}"
    return f"({e})" if r.random() < 0.5 else e


def arithmetic_expressions(n: int = 20, seed: int = 0) -> list[str]:
    """``n`` arithmetic expressions with nesting up to depth 4."""
    r = random.Random(seed)
    return [_expr(r, 4) for _ in range(n)]
