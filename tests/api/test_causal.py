"""``generate`` with causal LMs: reproducible, batched, stop strings, grammars, JSON Schema, ASAp, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import decoding as dc
from decoding.api.causal_lm import StopStrings, cut_at_stop
from decoding.core.loop import NonFiniteLogitsError

PROMPTS = ["Hello there", "A much longer prompt than the first one"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return dc.load(tiny_llama_dir, device="cpu")


def test_shapes_order_and_reproducibility(tiny) -> None:
    kw = dict(n=2, max_new_tokens=5, sampling=dc.Sampling(typical=0.9, temperature=0.8), seed=3)
    a = dc.generate(tiny, PROMPTS, **kw)
    assert a.kind == "causal-lm" and len(a) == 4 and a.prompt_index == [0, 0, 1, 1]
    assert all(1 <= len(t) <= 5 and nfe == len(t) for t, nfe in zip(a.tokens, a.nfe, strict=True))
    assert a.settings["sampling"] == {"temperature": 0.8, "typical": 0.9} and a.settings["seed"] == 3
    b = dc.generate(tiny, PROMPTS, **kw)
    assert a.tokens == b.tokens and a.text == b.text
    c = dc.generate(tiny, PROMPTS, **{**kw, "seed": 4})
    assert a.tokens != c.tokens


def test_batching_does_not_change_greedy_results(tiny) -> None:
    prompts = ["one", "two three four five", "six seven"]
    greedy = dc.Sampling(greedy=True)
    together = dc.generate(tiny, prompts, max_new_tokens=6, sampling=greedy)
    alone = [dc.generate(tiny, p, max_new_tokens=6, sampling=greedy).tokens[0] for p in prompts]
    assert together.tokens == alone
    split = dc.generate(tiny, prompts, max_new_tokens=6, sampling=greedy, batch_size=2)
    assert split.tokens == alone


def test_chat_template_wraps_the_prompt(tiny) -> None:
    text = tiny.prompt_text("Hi")
    assert "<|im_start|>user\nHi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert tiny.prompt_text("Hi", chat=False) == "Hi"
    assert tiny.encode(["Hi"], chat=False)["input_ids"].shape[1] < tiny.encode(["Hi"], chat=True)["input_ids"].shape[1]


def test_stop_strings_end_rows_and_cut_text(tiny) -> None:
    greedy = dc.Sampling(greedy=True)
    free = dc.generate(tiny, "Hello", max_new_tokens=12, sampling=greedy, chat=False)
    assert len(free.tokens[0]) == 12 and free.finish_reason == ["length"]
    target = tiny.decode(free.tokens[0][3:5])
    assert target.strip()
    stopped = dc.generate(tiny, "Hello", max_new_tokens=12, sampling=greedy, chat=False, stop=[target])
    assert stopped.finish_reason == ["stop"]
    assert stopped.tokens[0] == free.tokens[0][: len(stopped.tokens[0])] and len(stopped.tokens[0]) <= 5
    assert target not in stopped.text[0]
    assert cut_at_stop("abc STOP def", ["STOP", "d"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert StopStrings(tiny.tokenizer, ["x"], 0).window >= 5
    for empty in ("", [""]):  # an empty stop string stops nothing
        assert dc.generate(tiny, "Hello", max_new_tokens=12, sampling=greedy, chat=False, stop=empty).tokens == free.tokens


def test_grammar_and_json_schema_constrain_every_sample(tiny) -> None:
    g = dc.generate(tiny, "bits:", n=4, grammar="binary", max_new_tokens=8, chat=False, seed=1)
    allowed = {"00000"} | {"1" + format(i, "04b") for i in range(16)}
    assert all(t in allowed for t in g.text) and g.finish_reason == ["eos"] * 4  # the budget guard closes them
    assert "budget_limited" in g.info
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
    js = dc.generate(tiny, "json:", n=3, json_schema=schema, max_new_tokens=24, chat=False, seed=0)
    for text, reason in zip(js.text, js.finish_reason, strict=True):
        assert reason == "eos" and isinstance(json.loads(text)["a"], int)
    assert js.settings["json_schema"] == schema
    again = dc.generate(tiny, "json:", n=3, json_schema=json.dumps(schema), max_new_tokens=24, chat=False, seed=0)
    assert again.text == js.text  # the same schema as JSON text: same grammar, same samples
    low = dc.generate(tiny, "n:", n=2, json_schema={"type": "integer", "minimum": 5}, max_new_tokens=6, chat=False, seed=0)
    assert all(int(t) >= 5 for t, r in zip(low.text, low.finish_reason, strict=True) if r == "eos")  # not lark's lexer order


def test_aligned_sampling_persists_its_trie(tiny, tmp_path) -> None:
    trie = tmp_path / "t.safetensors"
    allowed = {"00000"} | {"1" + format(i, "04b") for i in range(16)}
    out = dc.generate(tiny, "bits:", n=3, grammar="binary", aligned=True, trie=trie, max_new_tokens=8, chat=False)
    assert trie.is_file() and out.settings["trie_samples"] == 3
    assert all(t in allowed for t, r in zip(out.text, out.finish_reason, strict=True) if r == "eos")
    more = dc.generate(tiny, "bits:", n=2, grammar="binary", aligned=True, trie=trie, max_new_tokens=8, chat=False)
    assert more.settings["trie_samples"] == 5
    with pytest.raises(ValueError, match="belongs to"):  # another sampling distribution: another trie
        dc.generate(tiny, "bits:", grammar="binary", aligned=True, trie=trie, max_new_tokens=8, chat=False,
                    sampling=dc.Sampling(temperature=0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
        (dict(sampling=dc.Sampling), "sampling must be a decoding.Sampling"),
        (dict(sampling={"typical": 1.2}), r"typical mass\) must lie in \(0, 1\)"),
        (dict(sampling={"temperature": -0.5}), "temperature must be > 0"),
        (dict(sampling={"temperature": 1e-40}), "temperature must be a finite number >= 1e-06"),
        (dict(sampling={"top_q": 0.5}), "unknown sampling field"),
        (dict(max_new_tokens=200), "exceeds the context"),
        (dict(n=0), "n must be a whole number >= 1"),
        (dict(seed=2**70), r"seed must be a whole number in \[-2\*\*63, 2\*\*64 - 1\]"),
        (dict(seed=1.5), "seed must be a whole number"),
        (dict(json_schema=False), "no JSON value satisfies"),
        (dict(grammar="start: \"a\"\n%import nonexistent.X\n"), "an %import names no grammar"),
        (dict(grammar="json", json_schema={}), "not both"),
        (dict(budget_close=False), "budget_close applies to grammar-constrained decoding"),
        (dict(trie="x.safetensors"), "give it with aligned=True"),
        (dict(aligned=True), "needs a grammar or a json_schema"),
        (dict(aligned=True, grammar="binary", stop=["x"]), "stop strings do not apply with aligned=True"),
        (dict(grammar="nosuchgrammar"), "unknown grammar 'nosuchgrammar'"),
        (dict(grammar="start: a\na: \"x\" (", ), "line"),
        (dict(json_schema="{not json"), "not valid JSON"),
        (dict(steps=3), "option 'steps' does not apply to causal-lm models"),
        (dict(class_label=3), "option 'class_label' does not apply to causal-lm models"),
        (dict(guidance=["cfg:2"]), "option 'guidance' does not apply to causal-lm models"),
        (dict(speculative=4), "option 'speculative' does not apply to causal-lm models"),
    ],
)
def test_bad_options_are_clear_errors(tiny, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        dc.generate(tiny, "hi", **kwargs)


def test_bad_prompts(tiny) -> None:
    with pytest.raises(dc.OptionError, match="give a prompt"):
        dc.generate(tiny)
    with pytest.raises(ValueError, match="shorten the prompt"):
        dc.generate(tiny, "word " * 300, max_new_tokens=1)


def test_nan_weights_are_reported(tiny_llama_dir) -> None:
    lm = dc.load(tiny_llama_dir, device="cpu")
    with torch.no_grad():
        lm.model.net.norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLogitsError, match="step 0"):
        dc.generate(lm, "hi", max_new_tokens=2)


def test_smollm2_answers_a_chat_prompt(smollm2_native) -> None:
    greedy = dc.Sampling(greedy=True)
    out = dc.generate(smollm2_native, "What is the capital of France?", max_new_tokens=8, sampling=greedy)
    assert "Paris" in out.text[0]
    hf = dc.load("smollm2", device="cpu", engine="hf")
    assert dc.generate(hf, "What is the capital of France?", max_new_tokens=8, sampling=greedy).tokens == out.tokens
