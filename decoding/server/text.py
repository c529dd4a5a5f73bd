"""``/v1/completions`` and ``/v1/chat/completions``: requests -> jobs of the continuous batch -> OpenAI answers."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from decoding.api.options import OptionError, Sampling
from decoding.server.errors import APIError, bad_request
from decoding.server.grammars import grammar_request
from decoding.server.jobs import RowUpdate, TextJob
from decoding.server.schemas import ChatRequest, CompletionRequest, TextRequest
from decoding.server.streaming import TextStream, sse


def sampling_of(req: TextRequest) -> Sampling:
    """OpenAI's sampling fields as a :class:`Sampling` (``temperature: 0`` = greedy; 1 and other neutral values = off)."""
    t = req.temperature
    try:
        return Sampling(
            temperature=None if t in (None, 0, 1) else t,
            top_k=req.top_k or None,
            top_p=None if req.top_p in (None, 1) else req.top_p,
            min_p=req.min_p or None,
            typical=None if req.typical_p in (None, 1) else req.typical_p,
            repetition_penalty=None if req.repetition_penalty in (None, 1) else req.repetition_penalty,
            greedy=t == 0,
        )
    except OptionError as e:
        raise bad_request(str(e).removeprefix("sampling."), str(e).split()[0].removeprefix("sampling.")) from None


def refuse_unsupported(req: TextRequest) -> None:
    """OpenAI fields this server does not implement: accepted at their neutral value only."""
    if req.presence_penalty or req.frequency_penalty:
        raise bad_request("presence_penalty and frequency_penalty are not supported; use repetition_penalty", "presence_penalty")
    if req.logit_bias:
        raise bad_request("logit_bias is not supported; use grammar or response_format to restrict tokens", "logit_bias")
    if isinstance(req, CompletionRequest):
        if req.echo:
            raise bad_request("echo is not supported", "echo")
        if req.best_of not in (None, 1, req.n):
            raise bad_request("best_of is not supported (use n)", "best_of")
        if req.suffix:
            raise bad_request("suffix (insertion) is not supported by causal LMs", "suffix")
    if isinstance(req, ChatRequest) and (req.tools or req.tool_choice not in (None, "none")):
        raise bad_request("tools are not supported; use response_format json_schema for structured answers", "tools")


def encode_prompts(lm: Any, req: TextRequest) -> list[list[int]]:
    """Token ids of each prompt (completions: one or several; chat: the template around the messages)."""
    tok = lm.tokenizer
    if isinstance(req, ChatRequest):
        if not getattr(tok, "chat_template", None):
            raise bad_request(f"model {lm.name} has no chat template; use /v1/completions", "messages")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return [tok(text, add_special_tokens=False)["input_ids"]]
    prompt = req.prompt
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif prompt and all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]
    else:
        prompts = list(prompt)
    if not prompts:
        raise bad_request("prompt is empty", "prompt")
    width = getattr(lm.model, "vocab_size", None) or len(tok)
    out = []
    for p in prompts:
        ids = tok(p, add_special_tokens=True)["input_ids"] if isinstance(p, str) else list(p)
        if any(not 0 <= i < width for i in ids):
            raise bad_request(f"prompt token ids must lie in [0, {width})", "prompt")
        out.append(ids)
    return out


@dataclass
class Choice:
    """One sample's text as it grows, and what the answer reports about it."""

    stream: TextStream
    finish: str | None = None
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)
    budget_limited: bool = False
    constrained: bool = False
    wants_logprobs: bool = False

    def add(self, upd: RowUpdate) -> str:
        if upd.logprobs is not None:  # the end-of-sequence token is not part of the answer's text: nor of its logprobs
            eos = set(self.stream.lm.eos_token_ids)
            self.logprobs.extend((t, lp, alts) for t, (lp, alts) in zip(upd.tokens, upd.logprobs, strict=False) if t not in eos)
        self.finish = upd.finish
        self.budget_limited = upd.budget_limited
        return self.stream.push(upd.tokens, final=upd.finish is not None)


class TextHandler:
    """Builds jobs from requests, feeds the scheduler, and answers in OpenAI's formats."""

    def __init__(self, server: Any) -> None:
        self.s = server

    async def handle(self, req: TextRequest, request: Request) -> Any:
        s, lm, cfg = self.s, self.s.lm, self.s.config
        refuse_unsupported(req)
        chat = isinstance(req, ChatRequest)
        if req.n > cfg.max_n:
            raise bad_request(f"n must be <= {cfg.max_n} on this server", "n")
        max_tokens = (req.max_completion_tokens or req.max_tokens) if chat else req.max_tokens
        if max_tokens is None:
            max_tokens = cfg.default_max_tokens if chat else 16
        if max_tokens > cfg.max_tokens:
            raise bad_request(f"max_tokens must be <= {cfg.max_tokens} on this server", "max_tokens")
        sampling = sampling_of(req)
        stops = [x for x in ([req.stop] if isinstance(req.stop, str) else req.stop or []) if x]  # "" stops nothing
        top = (req.top_logprobs or 0 if req.logprobs else None) if chat else req.logprobs
        prompts = encode_prompts(lm, req)
        for ids in prompts:
            if not ids:
                raise bad_request("the prompt is empty after tokenisation", "prompt")
            if len(ids) > cfg.max_prompt_tokens:
                raise bad_request(f"the prompt has {len(ids)} tokens; this server takes at most {cfg.max_prompt_tokens}", "prompt")
            if len(ids) + max_tokens > lm.max_context:
                raise bad_request(f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                                  f"{lm.name} ({lm.max_context} tokens)", "max_tokens")
        spec = grammar_request(req, cfg.max_grammar_bytes)
        grammar, source = (None, None) if spec is None else await s.grammars.get(*spec)
        if req.aligned:
            self._check_aligned(req, grammar, stops, top)
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        choices = [Choice(TextStream(lm, stops), constrained=grammar is not None, wants_logprobs=top is not None)
                   for _ in range(len(prompts) * req.n)]
        jobs = []
        for k, ids in enumerate(prompts):
            job = TextJob(ids, req.n, seed, sampling, max_tokens, stops, grammar, top,
                          deliver=lambda item, k=k: loop.call_soon_threadsafe(queue.put_nowait, (k, item)))
            jobs.append(job)
        if req.aligned:
            for job in jobs:
                self._submit_aligned(job, source, queue, loop)
        else:
            for job in jobs:
                s.scheduler.submit(job)
        meta = dict(id=("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex, created=int(time.time()), model=cfg.served_name)
        usage = {"prompt_tokens": sum(len(p) for p in prompts)}
        if req.stream:
            body = self._stream(chat, req, jobs, choices, queue, meta, usage)
            return StreamingResponse(body, media_type="text/event-stream")
        watcher = asyncio.ensure_future(_watch_disconnect(request, jobs, queue))
        try:
            async for _ in _updates(queue, jobs, choices):
                pass
        finally:
            watcher.cancel()
            for job in jobs:
                job.cancel()
        if watcher.done() and not watcher.cancelled():  # the client went away: no one reads an answer
            return Response(status_code=499)
        return JSONResponse(self._final(chat, choices, meta, usage))

    # ---- aligned ---------------------------------------------------------------------------
    def _check_aligned(self, req: TextRequest, grammar: Any, stops: list[str], top: int | None) -> None:
        if grammar is None:
            raise bad_request("aligned: true needs a grammar or a response_format json_object / json_schema", "aligned")
        if req.temperature == 0:
            raise bad_request("aligned: true samples; temperature 0 (greedy) does not apply", "temperature")
        if stops:
            raise bad_request("stop does not apply with aligned: true (a sample ends where the grammar ends)", "stop")
        if top is not None:
            raise bad_request("logprobs are not reported with aligned: true", "logprobs")

    def _submit_aligned(self, job: TextJob, source: str | None, queue: asyncio.Queue, loop: Any) -> None:
        eos = set(self.s.lm.eos_token_ids)
        counter = iter(range(job.n))

        def on_sample(seq: list[int]) -> None:
            finish = "stop" if seq and seq[-1] in eos else "length"
            job.deliver([RowUpdate(next(counter), list(seq), None, finish)])

        def task() -> None:
            if not job.cancelled.is_set():
                self.s.tries.run(job.prompt_ids, job.n, job.seed, job.sampling, job.max_tokens, job.grammar,
                                 source or "", on_sample)

        future = self.s.scheduler.run_task(task)
        future.add_done_callback(lambda f: f.exception() is not None and job.deliver(f.exception()))

    # ---- answers ---------------------------------------------------------------------------
    def _final(self, chat: bool, choices: list[Choice], meta: dict, usage: dict) -> dict:
        out = []
        for i, c in enumerate(choices):
            text = c.stream.text()
            item: dict[str, Any] = {"index": i, "finish_reason": c.finish}
            if chat:
                item["message"] = {"role": "assistant", "content": text}
                item["logprobs"] = self._chat_logprobs(c.logprobs) if c.wants_logprobs else None
            else:
                item["text"] = text
                item["logprobs"] = self._completion_logprobs(c.logprobs) if c.wants_logprobs else None
            if c.constrained:
                item["budget_limited"] = c.budget_limited
            out.append(item)
        usage = {**usage, "completion_tokens": sum(len(c.stream.tokens) for c in choices)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        kind = "chat.completion" if chat else "text_completion"
        return {**meta, "object": kind, "choices": out, "usage": usage}

    def _token(self, t: int) -> str:
        return self.s.lm.tokenizer.decode([t])

    def _completion_logprobs(self, entries: list) -> dict:
        tokens = [self._token(t) for t, _, _ in entries]
        offsets, at = [], 0
        for s in tokens:
            offsets.append(at)
            at += len(s)
        return {"tokens": tokens, "token_logprobs": [lp for _, lp, _ in entries],
                "top_logprobs": [{self._token(a): v for a, v in alts} for _, _, alts in entries], "text_offset": offsets}

    def _chat_logprobs(self, entries: list) -> dict:
        def one(t: int, lp: float) -> dict:
            s = self._token(t)
            return {"token": s, "logprob": lp, "bytes": list(s.encode())}

        return {"content": [{**one(t, lp), "top_logprobs": [one(a, v) for a, v in alts]} for t, lp, alts in entries]}

    async def _stream(self, chat: bool, req: TextRequest, jobs: list[TextJob], choices: list[Choice],
                      queue: asyncio.Queue, meta: dict, usage: dict) -> AsyncIterator[str]:
        kind = "chat.completion.chunk" if chat else "text_completion"
        include_usage = req.stream_options is not None and req.stream_options.include_usage
        try:
            if chat:
                for i in range(len(choices)):
                    yield sse({**meta, "object": kind, "choices": [
                        {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]})
            async for i, delta, entries in _updates(queue, jobs, choices):
                c = choices[i]
                lp = None
                if entries and c.wants_logprobs:
                    lp = self._chat_logprobs(entries) if chat else self._completion_logprobs(entries)
                if not delta and c.finish is None and lp is None:
                    continue
                item: dict[str, Any] = {"index": i, "logprobs": lp, "finish_reason": c.finish}
                if chat:
                    item["delta"] = {"content": delta} if delta else {}
                else:
                    item["text"] = delta
                yield sse({**meta, "object": kind, "choices": [item]})
            if include_usage:
                done = {**usage, "completion_tokens": sum(len(c.stream.tokens) for c in choices)}
                done["total_tokens"] = done["prompt_tokens"] + done["completion_tokens"]
                yield sse({**meta, "object": kind, "choices": [], "usage": done})
            yield sse("[DONE]")
        except APIError as e:
            yield sse(e.body())
            yield sse("[DONE]")
        finally:
            for job in jobs:
                job.cancel()


CLIENT_GONE = object()  # put on a request's update queue when its client went away


async def _updates(queue: asyncio.Queue, jobs: list[TextJob], choices: list[Choice]) -> AsyncIterator[tuple[int, str, list]]:
    """``(choice index, new text, new logprob entries)`` until every choice has finished."""
    n = jobs[0].n
    open_choices = len(choices)
    while open_choices:
        k, item = await queue.get()
        if item is CLIENT_GONE:  # the scheduler sends nothing more to cancelled jobs
            return
        if isinstance(item, BaseException):
            raise APIError(500, f"decoding failed: {type(item).__name__}: {item}")
        for upd in item:
            c = choices[k * n + upd.choice]
            before = len(c.logprobs)
            delta = c.add(upd)
            if upd.finish is not None:
                open_choices -= 1
            yield k * n + upd.choice, delta, c.logprobs[before:]


async def _watch_disconnect(request: Request, jobs: list[TextJob], queue: asyncio.Queue) -> None:
    """Cancel the jobs when the client of a non-streaming request goes away, and end the request's
    wait for their updates (:data:`CLIENT_GONE`)."""
    while True:
        await asyncio.sleep(0.2)
        if await request.is_disconnected():
            for job in jobs:
                job.cancel()
            queue.put_nowait((0, CLIENT_GONE))
            return
