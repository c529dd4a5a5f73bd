"""``decoding serve`` through the real ``openai`` client (sync and async) against a live local server.

The tiny random Llama (SmolLM2's tokenizer) keeps most tests fast; its answers are compared with
``decoding.generate`` on a second copy of the model (the server's copy belongs to its thread).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import httpx2 as httpx
import jsonschema
import numpy as np
import openai
import pytest
from PIL import Image

import decoding as dc
from decoding.server import ServerConfig, create_app
from decoding.server.aligned import TrieStore
from decoding.server.live import LiveServer

pytestmark = pytest.mark.one_thread

NAME = "tiny"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def ref(tiny_llama_dir):
    """A second copy of the model for reference answers."""
    return dc.load(tiny_llama_dir, device="cpu")


@pytest.fixture(scope="module")
def live(tiny_llama_dir, tmp_path_factory):
    lm = dc.load(tiny_llama_dir, device="cpu")
    config = ServerConfig(served_name=NAME, state_dir=tmp_path_factory.mktemp("serve-state"), max_n=8,
                          max_tokens=100, max_prompt_tokens=60, max_grammar_bytes=4000)
    with LiveServer(create_app(lm, config)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)


def error_of(excinfo: pytest.ExceptionInfo) -> dict:
    body = excinfo.value.body
    assert set(body) >= {"message", "type", "param", "code"}, body  # the openai client unwraps {"error": {...}}
    return body


def test_models_health_and_a_completion_equal_to_generate(live, client, ref) -> None:
    assert [m.id for m in client.models.list().data] == [NAME]
    health = httpx.get(live.url + "/health").json()
    assert health["status"] == "ok" and health["kind"] == "causal-lm"
    out = client.completions.create(model=NAME, prompt="Hello there", max_tokens=8, seed=5, temperature=0.8,
                                    extra_body={"top_k": 50})
    want = dc.generate(ref, "Hello there", max_new_tokens=8, seed=5, chat=False,
                       sampling=dc.Sampling(temperature=0.8, top_k=50))
    assert out.choices[0].text == want.text[0] and out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 8 and out.usage.prompt_tokens == 2
    greedy = client.completions.create(model=NAME, prompt="Hello there", max_tokens=6, temperature=0)
    assert greedy.choices[0].text == dc.generate(ref, "Hello there", max_new_tokens=6, chat=False,
                                                 sampling=dc.Sampling(greedy=True)).text[0]


def test_chat_stream_equals_chat_and_n3_is_reproducible(client, ref) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    kw = dict(model=NAME, messages=msgs, max_tokens=10, seed=11, top_p=0.9)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and whole.choices[0].message.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    three = client.chat.completions.create(**{**kw, "n": 3})
    again = client.chat.completions.create(**{**kw, "n": 3})
    texts = [c.message.content for c in three.choices]
    assert [c.index for c in three.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert texts == [c.message.content for c in again.choices]  # same seed, same samples
    assert texts[0] == whole.choices[0].message.content  # sample 0 of a seed is the n=1 sample
    other = client.chat.completions.create(**{**kw, "seed": 12})
    assert other.choices[0].message.content != texts[0]


REQUESTS = [
    dict(prompt="one", max_tokens=12, temperature=0),
    dict(prompt="two three four", max_tokens=5, seed=1, temperature=0.7, top_p=0.8),
    dict(prompt="five", max_tokens=9, seed=2, extra_body={"min_p": 0.05, "repetition_penalty": 1.3}),
    dict(prompt="six seven", max_tokens=7, seed=3, extra_body={"typical_p": 0.9, "top_k": 30}),
    dict(prompt="eight", max_tokens=15, seed=4, n=2),
    dict(prompt="nine ten", max_tokens=40, seed=5, extra_body={"response_format": {"type": "json_object"}}),
    dict(prompt="eleven", max_tokens=6, seed=6, extra_body={"grammar": 'start: ("yes" | "no")+'}),
    dict(prompt="twelve", max_tokens=10, seed=7, stop=["e", "a"]),
]


def concurrently(url: str, requests: list[dict]) -> list:
    async def together():
        aclient = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        async with aclient:
            return await asyncio.gather(*[aclient.completions.create(model=NAME, **r) for r in requests])

    return asyncio.run(together())


def assert_same_answers(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        assert [c.text for c in x.choices] == [c.text for c in y.choices]
        assert [c.finish_reason for c in x.choices] == [c.finish_reason for c in y.choices]


def test_rows_in_a_changing_batch_equal_the_same_requests_alone(live, client, tiny_llama_dir, tmp_path: Path) -> None:
    """Concurrent requests with different settings share the batch and answer as they do alone;
    so they do in a batch padded to power-of-two shapes (the CUDA default)."""
    alone = [client.completions.create(model=NAME, **r) for r in REQUESTS]
    live.server_state.scheduler.max_rows_seen = 0
    assert_same_answers(alone, concurrently(live.url, REQUESTS))
    assert live.server_state.scheduler.max_rows_seen >= 3  # they did share model calls
    lm = dc.load(tiny_llama_dir, device="cpu")
    config = ServerConfig(served_name=NAME, state_dir=tmp_path, bucket_rows=True, chunk_steps=3)
    with LiveServer(create_app(lm, config)) as s:
        assert_same_answers(alone, concurrently(s.url, REQUESTS))
        assert httpx.get(s.url + "/health").json()["running_rows"] == 0


def test_json_schema_answers_validate(client) -> None:
    out = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "A person as JSON."}], max_tokens=60, n=3, seed=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}},
    )
    for c in out.choices:
        assert c.finish_reason == "stop"
        jsonschema.validate(json.loads(c.message.content), SCHEMA)


def test_lark_grammar_and_stop_strings(client, ref) -> None:
    out = client.completions.create(model=NAME, prompt="Answer:", max_tokens=8, seed=3, n=4,
                                    extra_body={"grammar": 'start: "yes" | "no" | "maybe"'})
    assert {c.text for c in out.choices} <= {"yes", "no", "maybe"} and all(c.finish_reason == "stop" for c in out.choices)
    free = dc.generate(ref, "Hello", max_new_tokens=12, sampling=dc.Sampling(greedy=True), chat=False)
    stop = ref.decode(free.tokens[0][3:5])
    cut = client.completions.create(model=NAME, prompt="Hello", max_tokens=12, temperature=0, stop=[stop])
    want = dc.generate(ref, "Hello", max_new_tokens=12, sampling=dc.Sampling(greedy=True), chat=False, stop=[stop])
    assert cut.choices[0].text == want.text[0] and stop not in cut.choices[0].text
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=NAME, prompt="Hello", max_tokens=12, temperature=0, stop=[stop], stream=True))
    assert streamed == want.text[0]


def test_logprobs(client) -> None:
    out = client.completions.create(model=NAME, prompt="Hi", max_tokens=4, seed=0, logprobs=2)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == 4 and "".join(lp.tokens) == out.choices[0].text
    assert all(len(t) <= 2 for t in lp.top_logprobs) and all(x <= 0 for x in lp.token_logprobs)
    chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                          seed=0, logprobs=True, top_logprobs=3, temperature=0)
    content = chat.choices[0].logprobs.content
    assert len(content) == 3 and all(len(c.top_logprobs) == 3 for c in content)
    assert all(c.logprob == pytest.approx(c.top_logprobs[0].logprob) for c in content)  # greedy: the top token
    ended = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=20, n=4,
                                           seed=0, logprobs=True, extra_body={"grammar": 'start: "ab" | "a"'})
    for c in ended.choices:  # each ends with the end-of-sequence token, which is not in the text nor in its logprobs
        assert c.finish_reason == "stop" and "".join(e.token for e in c.logprobs.content) == c.message.content


def test_aligned_requests_persist_their_trie(live, client, ref, tmp_path: Path) -> None:
    grammar = 'start: "a" "b"? "c"*\n'
    kw = dict(model=NAME, prompt="Letters:", max_tokens=6, seed=2, n=3, extra_body={"grammar": grammar, "aligned": True})
    first = client.completions.create(**kw)
    want = dc.generate(ref, "Letters:", n=3, seed=2, max_new_tokens=6, grammar=grammar, aligned=True, chat=False,
                       trie=tmp_path / "t.trie")
    assert [c.text for c in first.choices] == want.text
    assert [c.finish_reason for c in first.choices] == ["stop" if r == "eos" else r for r in want.finish_reason]
    client.completions.create(**kw)
    store = live.server_state.tries
    files = list(store.folder.glob("*.trie"))
    assert len(files) == 1
    fresh = TrieStore(ref, store.folder)  # a restarted server reads the trie back
    assert fresh.get(next(iter(store.tries))).samples == 6


def test_disconnect_frees_the_rows(live) -> None:
    body = {"model": NAME, "prompt": "Go", "max_tokens": 100, "stream": True, "seed": 0}
    steps_before = live.server_state.scheduler.steps_run
    with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # the first tokens arrived: hang up
    for _ in range(200):
        if httpx.get(live.url + "/health").json()["running_rows"] == 0:
            break
        asyncio.run(asyncio.sleep(0.02))
    health = httpx.get(live.url + "/health").json()
    assert health["running_rows"] == 0 and health["steps"] - steps_before < 100


@pytest.mark.parametrize(
    "kw, status, where",
    [
        (dict(model="gpt-4", prompt="x"), 404, "does not exist"),
        (dict(model=NAME, prompt="x", extra_body={"grammar": "start: ("}), 400, "Unclosed parenthesis"),
        (dict(model=NAME, prompt="x", extra_body={"grammar": "no_such_grammar"}), 400, "unknown grammar"),
        (dict(model=NAME, prompt="x", extra_body={"grammar": "x" * 5000}), 400, "limit of 4000 bytes"),
        (dict(model=NAME, prompt="x", extra_body={"response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": {"type": "object", "properties": {"a": {"type": "strange"}}}}}}), 400, "strange"),
        (dict(model=NAME, prompt="x", extra_body={"foo": 1}), 400, "unknown field 'foo'"),
        (dict(model=NAME, prompt="x", n=9), 400, "n must be <= 8"),
        (dict(model=NAME, prompt="x", max_tokens=101), 400, "max_tokens must be <= 100"),
        (dict(model=NAME, prompt="word " * 70), 400, "at most 60"),
        (dict(model=NAME, prompt="word " * 50, max_tokens=100), 400, "exceeds the context"),
        (dict(model=NAME, prompt="x", presence_penalty=0.5), 400, "repetition_penalty"),
        (dict(model=NAME, prompt="x", temperature=-1), 400, "temperature"),
        (dict(model=NAME, prompt="x", temperature=1e-40), 400, "temperature must be a finite number"),
        (dict(model=NAME, prompt="x", extra_body={"aligned": True}), 400, "needs a grammar"),
        (dict(model=NAME, prompt="x", extra_body={"grammar": "json", "aligned": True}, temperature=0), 400, "greedy"),
        (dict(model=NAME, prompt="x", seed=2**70), 400, "seed"),
        (dict(model=NAME, prompt="x", extra_body={"grammar": 'start: "a"\n%import nonexistent.X\n'}), 400, "lark's own"),
        (dict(model=NAME, prompt="x", extra_body={"grammar": 'start: X\n%import .secret.X\n'}), 400, "lark's own"),
        (dict(model=NAME, prompt="x", extra_body={"response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": False}}}), 400, "no JSON value satisfies"),
    ],
)
def test_errors_in_openai_shape(client, kw: dict, status: int, where: str) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(**kw)
    assert e.value.status_code == status and where in error_of(e)["message"]


def test_a_grammar_is_never_read_from_the_servers_files(client, tmp_path: Path) -> None:
    """A path with a newline (which makes it grammar text) is parsed as text, not opened."""
    path = tmp_path / "secret.lark"
    path.write_text('start: "zz"\n')
    for text in (f"{path}\n", f"\n{path}", f" {path}\n"):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=NAME, prompt="x", max_tokens=4, extra_body={"grammar": text})
        assert "cannot be compiled" in error_of(e)["message"]


def test_json_mode_answers_objects_and_true_schema_any_json(client) -> None:
    out = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=60, n=4,
                                         seed=0, response_format={"type": "json_object"})
    finished = [c for c in out.choices if c.finish_reason == "stop"]
    assert finished and all(isinstance(json.loads(c.message.content), dict) for c in finished)
    out = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=60, n=2,
                                         seed=0, response_format={"type": "json_schema", "json_schema": {"name": "any", "schema": True}})
    for c in out.choices:
        if c.finish_reason == "stop":
            json.loads(c.message.content)  # any JSON value


def test_an_empty_stop_string_stops_nothing(client, ref) -> None:
    out = client.completions.create(model=NAME, prompt="Hello", max_tokens=6, temperature=0, stop="")
    want = dc.generate(ref, "Hello", max_new_tokens=6, sampling=dc.Sampling(greedy=True), chat=False, stop="")
    assert out.choices[0].text == want.text[0] and out.usage.completion_tokens == 6


def test_a_dropped_non_streaming_request_stops_waiting() -> None:
    """The client of a non-streaming request hangs up: its jobs are cancelled and its wait for updates ends
    (the scheduler sends nothing more to a cancelled job, so without the watcher's note it would wait forever)."""
    from decoding.server.text import Choice, _updates, _watch_disconnect

    class Gone:
        async def is_disconnected(self) -> bool:
            return True

    class Job:
        n = 1
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    async def run() -> list:
        queue: asyncio.Queue = asyncio.Queue()
        job = Job()
        watcher = asyncio.ensure_future(_watch_disconnect(Gone(), [job], queue))
        got = [u async for u in _updates(queue, [job], [Choice(None)])]
        await watcher
        return [got, job.cancelled]

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [[], True]


def test_image_route_on_a_text_model_and_unknown_route(live, client) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model=NAME, prompt="3")
    assert "causal-lm model" in error_of(e)["message"]
    r = httpx.post(live.url + "/v1/embeddings", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_api_key_guards_every_route_but_health(tiny_llama_dir, tmp_path: Path) -> None:
    lm = dc.load(tiny_llama_dir, device="cpu")
    with LiveServer(create_app(lm, ServerConfig(served_name=NAME, api_key="s3cret", state_dir=tmp_path))) as s:
        assert httpx.get(s.url + "/health").status_code == 200
        assert httpx.get(s.url + "/v1/models").status_code == 401
        assert all(httpx.get(s.url + page).status_code == 404 for page in ("/docs", "/redoc", "/openapi.json"))
        with pytest.raises(openai.AuthenticationError) as e:
            openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0).models.list()
        assert error_of(e)["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(model=NAME, prompt="Hi", max_tokens=2, seed=0).usage.completion_tokens == 2


def test_images_as_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from decoding.models.image import TRAIN_SCHEDULE, save_unet
    from tests.api.fixtures import tiny_unet_model

    save_unet(tiny_unet_model().net, tmp_path / "zoo" / "fashion-tiny", {"prediction": "v", "schedule": TRAIN_SCHEDULE})
    monkeypatch.setenv("DECODING_MODELS", str(tmp_path / "zoo"))
    handle = dc.load("fashion-tiny", device="cpu")
    with LiveServer(create_app(handle, ServerConfig(served_name="fashion-tiny", state_dir=tmp_path))) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        out = client.images.generate(model="fashion-tiny", prompt="3", n=2, response_format="b64_json",
                                     extra_body={"steps": 2, "seed": 0, "solver": "ddim", "guidance": 2.0})
        want = dc.generate(dc.load("fashion-tiny", device="cpu"), class_label=3, n=2, steps=2, seed=0, solver="ddim",
                           guidance=["cfg:2.0"])
        got = [np.array(Image.open(io.BytesIO(base64.b64decode(d.b64_json)))) for d in out.data]
        assert all(np.array_equal(g, np.array(w)) for g, w in zip(got, want.pil_images(), strict=True))
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(model="fashion-tiny", prompt="a dragon", extra_body={"steps": 1})
        assert "names no class" in error_of(e)["message"]
        for body, where in (({"prompt": "\u00b2"}, "names no class"), ({"prompt": "3", "guidance": "Infinity"}, "guidance"),
                            ({"prompt": "3", "seed": -(2**64)}, "seed")):
            r = httpx.post(s.url + "/v1/images/generations", json={"model": "fashion-tiny", "steps": 1, **body})
            assert r.status_code == 400 and where in r.text, (body, r.text)
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="fashion-tiny", prompt="x")
        assert "image-diffusion model" in error_of(e)["message"]


def test_smollm2_answers_a_json_schema_chat(smollm2_folder, tmp_path: Path) -> None:
    lm = dc.load("smollm2", device="cpu")
    with LiveServer(create_app(lm, ServerConfig(served_name="smollm2", state_dir=tmp_path))) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        out = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Give a person's name and age as JSON."}],
            max_tokens=40, seed=0, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}},
        )
        jsonschema.validate(json.loads(out.choices[0].message.content), SCHEMA)
