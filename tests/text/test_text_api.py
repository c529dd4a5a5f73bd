"""``decoding.text_api.generate``: reproducible, batched, stop strings, chat template, clear errors."""

from __future__ import annotations

import pytest

from decoding.adapters.text_lm import load_text_lm
from decoding.core.loop import NonFiniteLogitsError
from decoding.text_api import StopStrings, cut_at_stop, generate


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_text_lm(tiny_llama_dir)


def test_generate_shapes_and_reproducibility(tiny) -> None:
    kw = dict(n=2, max_new_tokens=5, typical=0.9, temperature=0.8, seed=3)
    a = generate(tiny, ["Hello there", "A much longer prompt than the first one"], **kw)
    assert [(r.index, r.sample) for r in a] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(1 <= r.new_tokens <= 5 and r.nfe == r.new_tokens for r in a)
    assert a[0].prompt_tokens < a[2].prompt_tokens
    b = generate(tiny, ["Hello there", "A much longer prompt than the first one"], **kw)
    assert [r.tokens for r in a] == [r.tokens for r in b]
    c = generate(tiny, ["Hello there", "A much longer prompt than the first one"], **{**kw, "seed": 4})
    assert [r.tokens for r in a] != [r.tokens for r in c]


def test_batching_does_not_change_greedy_results(tiny) -> None:
    prompts = ["one", "two three four five", "six seven"]
    together = generate(tiny, prompts, max_new_tokens=6, greedy=True)
    alone = [generate(tiny, [p], max_new_tokens=6, greedy=True)[0] for p in prompts]
    assert [r.tokens for r in together] == [r.tokens for r in alone]


def test_chat_template_wraps_the_prompt(tiny) -> None:
    text = tiny.prompt_text("Hi")
    assert "<|im_start|>user\nHi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert tiny.prompt_text("Hi", chat=False) == "Hi"
    raw = tiny.encode(["Hi"], chat=False)["input_ids"]
    wrapped = tiny.encode(["Hi"], chat=True)["input_ids"]
    assert raw.shape[1] < wrapped.shape[1]


def test_stop_strings_end_rows_and_cut_text(tiny) -> None:
    free = generate(tiny, ["Hello"], max_new_tokens=12, greedy=True, chat=False)[0]
    assert free.new_tokens == 12
    target = tiny.decode(free.tokens[3:5])
    assert target.strip()
    stopped = generate(tiny, ["Hello"], max_new_tokens=12, greedy=True, chat=False, stop=[target])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.tokens == free.tokens[: stopped.new_tokens] and stopped.new_tokens <= 5
    assert target not in stopped.text
    assert cut_at_stop("abc STOP def", ["STOP", "d"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert StopStrings(tiny.tokenizer, ["x"], 0).window >= 5


def test_bad_input_errors(tiny) -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(tiny, ["hi"], max_new_tokens=0)
    with pytest.raises(ValueError, match=r"typical mass must be in \(0, 1\)"):
        generate(tiny, ["hi"], typical=1.2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(tiny, ["hi"], temperature=-0.5)
    with pytest.raises(ValueError, match="exceeds the context"):
        generate(tiny, ["hi"], max_new_tokens=200)  # tiny context: 128 tokens
    with pytest.raises(ValueError, match="shorten the prompt"):
        generate(tiny, ["word " * 300], max_new_tokens=1)
    with pytest.raises(ValueError, match="n .* must be >= 1"):
        generate(tiny, ["hi"], n=0)


def test_nan_weights_are_reported(tiny_llama_dir) -> None:
    lm = load_text_lm(tiny_llama_dir)
    with __import__("torch").no_grad():
        lm.model.net.norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLogitsError, match="step 0"):
        generate(lm, ["hi"], max_new_tokens=2)


def test_smollm2_answers_a_chat_prompt(smollm2_native) -> None:
    out = generate(smollm2_native, ["What is the capital of France?"], max_new_tokens=8, greedy=True)[0]
    assert "Paris" in out.text
    hf_out = generate(load_text_lm("smollm2", engine="hf"), ["What is the capital of France?"], max_new_tokens=8,
                      greedy=True)[0]
    assert hf_out.tokens == out.tokens
