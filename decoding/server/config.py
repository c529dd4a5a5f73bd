"""Settings of ``decoding serve``: where it listens, who may call it, and the limits of a request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerConfig:
    """Server settings (the CLI's options).

    Attributes:
        served_name: the model name requests must give (``/v1/models`` lists it).
        api_key: when set, every route but ``/health`` needs ``Authorization: Bearer KEY``.
        max_n: most samples per request (``n``).
        max_tokens: most new tokens per sample.
        default_max_tokens: ``max_tokens`` of a chat request that gives none (completions: 16, as OpenAI).
        max_prompt_tokens: longest prompt (after the chat template).
        max_grammar_bytes: largest grammar or JSON Schema (UTF-8 bytes of its text).
        max_batch_rows: rows decoded together at most (the continuous batch).
        chunk_steps: decode steps between two changes of the batch (1-8; None: 1 on the CPU, where a
            step of a full batch is slow and new requests should not wait, 8 on CUDA, where each
            change reads the device once).
        max_images: most images per image request.
        bucket_rows: pad the batch and its KV cache to powers of two so compiled steps and CUDA graphs
            see few shapes (None: on CUDA only; see :class:`~decoding.server.scheduler.Scheduler`).
        state_dir: where grammar-aligned decoding keeps its tries (one file per model, grammar and
            sampling settings; kept across restarts).
    """

    served_name: str
    api_key: str | None = None
    max_n: int = 16
    max_tokens: int = 2048
    default_max_tokens: int = 256
    max_prompt_tokens: int = 4096
    max_grammar_bytes: int = 65536
    max_batch_rows: int = 64
    chunk_steps: int | None = None
    max_images: int = 64
    bucket_rows: bool | None = None
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("max_n", "max_tokens", "default_max_tokens", "max_prompt_tokens", "max_grammar_bytes",
                     "max_batch_rows", "max_images"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_n > self.max_batch_rows:
            raise ValueError(f"max_n ({self.max_n}) must not exceed max_batch_rows ({self.max_batch_rows})")
        if self.chunk_steps is not None and not 1 <= self.chunk_steps <= 8:
            raise ValueError(f"chunk_steps must lie in 1..8, got {self.chunk_steps}")
