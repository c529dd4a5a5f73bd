"""The FastAPI application of ``decoding serve``: one model, OpenAI's routes, a shell over the engine.

Routes: ``GET /health`` (no key needed), ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (causal LMs), ``POST /v1/images/generations`` (image diffusion
models). Text requests join the continuous batch (:mod:`decoding.server.scheduler`); image and
grammar-aligned requests run as whole :func:`decoding.generate` / ASAp calls on the same model
thread. Errors come in OpenAI's shape (:mod:`decoding.server.errors`).
"""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from decoding.cache import cache_dir
from decoding.server.aligned import TrieStore
from decoding.server.config import ServerConfig
from decoding.server.errors import APIError, install_handlers
from decoding.server.grammars import GrammarCache
from decoding.server.images import generate_images
from decoding.server.scheduler import Scheduler
from decoding.server.schemas import ChatRequest, CompletionRequest, ImageRequest
from decoding.server.text import TextHandler

SERVED_KINDS = ("causal-lm", "image-diffusion")


class Server:
    """What the routes share: the model handle, its scheduler, grammar cache and ASAp tries."""

    def __init__(self, handle: Any, config: ServerConfig) -> None:
        kind = getattr(handle, "kind", None)
        if kind not in SERVED_KINDS:
            raise ValueError(f"decoding serve serves causal LMs and image diffusion models; {getattr(handle, 'name', handle)} "
                             f"is a {kind} model (use decoding generate for it)")
        self.handle = handle
        self.kind = kind
        self.config = config
        self.created = int(time.time())
        self.lm = handle if kind == "causal-lm" else None
        self.scheduler = Scheduler(self.lm, max_rows=config.max_batch_rows, chunk_steps=config.chunk_steps,
                                   bucket=config.bucket_rows)
        self.grammars = GrammarCache(self.lm) if self.lm is not None else None
        folder = config.state_dir if config.state_dir is not None else cache_dir("serve")
        self.tries = TrieStore(self.lm, Path(folder) / "tries") if self.lm is not None else None
        self.text = TextHandler(self)

    def check_model(self, name: str) -> None:
        if name != self.config.served_name:
            raise APIError(404, f"the model {name!r} does not exist: this server serves {self.config.served_name!r}",
                           param="model", code="model_not_found")

    def check_kind(self, kind: str, route: str) -> None:
        if self.kind != kind:
            other = "/v1/images/generations" if self.kind == "image-diffusion" else "/v1/completions or /v1/chat/completions"
            raise APIError(400, f"{self.config.served_name} is a {self.kind} model: {route} needs a {kind} model; "
                           f"use {other}", param="model", code="wrong_model_kind")


def create_app(handle: Any, config: ServerConfig) -> FastAPI:
    """The application serving ``handle`` (from :func:`decoding.load`) with ``config``."""
    server = Server(handle, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.scheduler.start()
        try:
            yield
        finally:
            server.scheduler.stop()
            if server.grammars is not None:
                server.grammars.close()

    # with a key, every route but /health needs it: FastAPI's own pages (/docs, /redoc, /openapi.json) are off
    docs = {} if config.api_key is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="decoding serve", lifespan=lifespan, **docs)
    app.state.server = server
    install_handlers(app)

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {config.api_key}".encode()):
            raise APIError(401, "missing or incorrect API key: send 'Authorization: Bearer KEY'", code="invalid_api_key")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": config.served_name, "kind": server.kind, **server.scheduler.load()}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    def card() -> dict[str, Any]:
        return {"id": config.served_name, "object": "model", "created": server.created, "owned_by": "decoding"}

    @v1.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card()]}

    @v1.get("/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        server.check_model(name)
        return card()

    @v1.post("/completions")
    async def completions(req: CompletionRequest, request: Request) -> Any:
        server.check_model(req.model)
        server.check_kind("causal-lm", "/v1/completions")
        return await server.text.handle(req, request)

    @v1.post("/chat/completions")
    async def chat(req: ChatRequest, request: Request) -> Any:
        server.check_model(req.model)
        server.check_kind("causal-lm", "/v1/chat/completions")
        return await server.text.handle(req, request)

    @v1.post("/images/generations")
    async def images(req: ImageRequest) -> JSONResponse:
        server.check_model(req.model)
        server.check_kind("image-diffusion", "/v1/images/generations")
        return JSONResponse(await generate_images(server, req))

    app.include_router(v1)
    return app
