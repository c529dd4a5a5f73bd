"""Accepted and rejected strings for each shipped grammar."""

ACCEPT = {
    "json": [
        '{"a": 1}',
        "[]",
        "{}",
        '[1, -2.5e+3, 0.25, true, false, null, "x\\n\\u00e9"]',
        '{\n  "a": [\n    1,\n    {\n      "b": null\n    }\n  ],\n  "c": {}\n}',
        '{"name": "Ünïcode 日本 🎉", "nested": {"list": [[], [{}]], "n": -0}}',
        '"just a string"',
        "42",
    ],
    "json_rfc": ['  [1, -2.5e+3, {"a" : "x\\n\\u00e9"} ,\t null]  ', "{}", '\n"s"\n'],
    "arithmetic": ["1", "1+2", "(1 + 2.5) * -3 / (4 - 5)", "--7", "((((0))))", "12 * 3 - 4 / 5"],
    "csv": ["a,b,c\n", 'name,"quoted, with comma","say ""hi"""\r\n1,,3\n', "\n", "x\ny\n"],
    "sql_select": [
        "SELECT * FROM t",
        "select a, b AS c from users u where a > 1 and b is not null;",
        "SELECT DISTINCT name, COUNT(*) AS n FROM t JOIN u ON t.id = u.id GROUP BY name ORDER BY n DESC LIMIT 10",
        "SELECT price * 2 FROM items WHERE name LIKE 'a%' OR id IN (1, 2, 3)",
        "SELECT f(x, 'it''s') FROM fromage",
    ],
    "binary": ["00000", "10000", "11111", "10101"],
}

REJECT = {
    "json": [
        '{"a" 1}',
        "[1,]",
        "{'a': 1}",
        '"unterminated',
        "01",
        "[1 2]",
        '{"a":1}}',
        "tru",
        '"\x01"',
        "",
        "[1 ,2]",
        " [1]",
        "[" + " " * 49 + "]",
    ],
    "json_rfc": ['{"a" 1}', "[1,]", "01", ""],
    "arithmetic": ["1+", "(1", "1 2", "+1", "1..2", "", "a"],
    "csv": ["a,b", 'a,"b\n', "", 'a"b\n'],
    "sql_select": [
        "SELECT FROM t",
        "SELECT * t",
        "SELECT a FROM",
        "SELECT * FROM t WHERE",
        "SELECT a FROM t ORDER a",
        "SELECT * FROM t LIMIT x",
    ],
    "binary": ["0000", "00001", "01111", "100000", "1000", "12345", ""],
}

# Documents whose tokenizations seed random reachable prefixes in the property tests.
SEEDS = {
    "json": ['{"id": 7, "tags": ["a", "b"], "ok": true, "score": -1.5e-3, "note": "café ☕ \\"q\\""}'],
    "json_rfc": ['[ {"k" : [ 1 , 2 ] } ,\n "v" ]'],
    "arithmetic": ["(3 + 4.25) * -2 / (10 - 7)"],
    "csv": ['id,name,note\n1,"Smith, J.","said ""hi"""\n2,,x\n'],
    "sql_select": [
        "SELECT a, COUNT(*) AS n FROM t JOIN u ON t.id = u.id WHERE a >= 1.5 GROUP BY a ORDER BY n DESC LIMIT 3;"
    ],
    "binary": ["10110", "00000"],
}
