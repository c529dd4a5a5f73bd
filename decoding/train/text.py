"""What the text trainers (RADD, AS-ARM) share: the token data, windows, the model folder and its card.

Data: a token file from :mod:`decoding.data.text_corpus` (``train`` and ``valid`` int32 streams of
documents ending with the end-of-text id). An example is a window of ``seq_len`` tokens of the
training stream; the sampler visits every start offset once per epoch (in a seeded order).
Validation uses the first ``eval_windows`` consecutive windows of the held-out stream.
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from decoding.data.text_corpus import fixed_windows, load_token_file, resolve_token_file
from decoding.data.tokenizer import REPO_ROOT
from decoding.data.weights import dtype_from_name
from decoding.io import atomic_write_bytes
from decoding.train.task import Task, require_each


@dataclass
class TextConfig:
    """Options shared by the text tasks.

    Attributes:
        data: token file (default ``$DECODING_BROWN_TOKENS`` or ``data/brown-sp4k-tokens.safetensors``).
        seq_len: tokens per training window (the model's context).
        dim, layers, heads: transformer width, depth and heads.
        eval_windows: held-out windows in each validation.
        eval_batch: windows per validation forward.
        dropout: dropout probability on the embeddings and residual branches while training (off in
            validation and in the shipped model; recorded in its config.json).
    """

    data: str | None = None
    seq_len: int = 128
    dim: int = 256
    layers: int = 8
    heads: int = 4
    eval_windows: int = 512
    eval_batch: int = 256
    dropout: float = 0.0

    def check(self) -> None:
        require_each(self, ("seq_len", "dim", "layers", "heads", "eval_windows", "eval_batch"), lambda v: v >= 1, "be >= 1")
        require_each(self, ("dropout",), lambda v: 0.0 <= v < 1.0, "lie in [0, 1)")
        if self.dim % self.heads:
            raise ValueError(f"--dim {self.dim} must be a multiple of --heads {self.heads}")

    def transformer_sizes(self) -> dict[str, Any]:
        """The :class:`~decoding.nn.transformer.TransformerConfig` fields these options set."""
        return {"dim": self.dim, "n_layers": self.layers, "n_heads": self.heads, "max_len": self.seq_len,
                "dropout": self.dropout}


class TextTask(Task):
    """Base of the token-window tasks: data, windows, export of the model folder with its card."""

    SESSION: ClassVar[frozenset[str]] = frozenset({"data", "eval_batch"})
    #: Title and first paragraph of the model card.
    card_intro: ClassVar[str] = ""
    config: TextConfig

    def __init__(self, config: TextConfig) -> None:
        config.check()
        self.config = config

    def setup(self, device: torch.device) -> dict[str, Any]:
        c = self.config
        path = resolve_token_file(c.data)
        streams, meta = load_token_file(path)
        self.meta = meta
        self.vocab = int(meta["vocab_size"])
        self.train_stream = streams["train"].to(device)
        if self.train_stream.numel() < c.seq_len:
            raise ValueError(f"{path}: the train stream has {self.train_stream.numel()} tokens, fewer than --seq-len {c.seq_len}")
        self.valid = fixed_windows(streams["valid"], c.seq_len)[: c.eval_windows].to(device)
        self.device = device
        self._offsets = torch.arange(c.seq_len, device=device)
        return {"token_file": str(path), **meta, "valid_windows_used": int(self.valid.shape[0])}

    def bind(self, data_info: dict[str, Any]) -> None:
        self.meta = data_info
        self.vocab = int(data_info["vocab_size"])

    @property
    def num_examples(self) -> int:
        return int(self.train_stream.numel()) - self.config.seq_len + 1

    def examples_per_epoch(self) -> int:
        """Windows per pass over the training tokens (``tokens / seq_len``)."""
        return max(1, int(self.train_stream.numel()) // self.config.seq_len)

    def windows(self, starts: Tensor) -> Tensor:
        """``(B, seq_len)`` long token windows starting at ``starts`` ``(B,)``."""
        return self.train_stream[starts[:, None] + self._offsets].long()

    def valid_batches(self) -> list[Tensor]:
        return list(self.valid.split(self.config.eval_batch))

    @abstractmethod
    def save(self, net: nn.Module, out: Path, extra: dict[str, Any], dtype: torch.dtype) -> None:
        """Write ``config.json`` + ``model.safetensors`` of ``net`` (the model's own saver)."""

    @abstractmethod
    def card_details(self, info: dict[str, Any]) -> list[str]:
        """Card bullet points on the network and the objective (markdown lines)."""

    @abstractmethod
    def card_usage(self, name: str) -> str:
        """A Python snippet that uses the model."""

    def export(self, net: nn.Module, out: Path, info: dict[str, Any]) -> list[Path]:
        data = info["data"]
        extra = {
            "seq_len": self.config.seq_len,
            "eot_id": int(data.get("eot_id", 2)),
            "banned_tokens": [0, 1, 3],  # <unk>, <s>, <pad>: never in the training windows
            "tokenizer": "tokenizer.model",
            "tokenizer_sha256": data.get("tokenizer_sha256"),
            "corpus": data.get("corpus"),
            **self.export_extra(),
        }
        self.save(net, out, extra, dtype_from_name(info["options"]["save_dtype"]))
        files = [out / "config.json", out / "model.safetensors"]
        tok = data.get("tokenizer")
        if tok:
            src = Path(tok) if Path(tok).is_absolute() else REPO_ROOT / tok
            if src.is_file():
                shutil.copyfile(src, out / "tokenizer.model")
                files.append(out / "tokenizer.model")
        atomic_write_bytes(out / "README.md", self.card(out.name, info).encode())
        files.append(out / "README.md")
        return files

    def export_extra(self) -> dict[str, Any]:
        """Model-specific ``config.json`` entries."""
        return {}

    def card(self, name: str, info: dict[str, Any]) -> str:
        """The model card (``README.md``) from the run's summary."""
        c, s, d, o = self.config, info["summary"], info["data"], info["options"]
        name = s.get("model", name)
        shipped = s.get("shipped_valid") or {}
        sessions = s.get("sessions", [])
        commands = [r.get("command") or "" for r in sessions] or [info.get("command") or f"decoding train {name}"]
        devices = sorted({r["device"] for r in sessions}) or [s.get("device")]
        lines = [
            f"# {name}",
            "",
            self.card_intro,
            "",
            *self.card_details(info),
            f"- Size: dim {c.dim}, {c.layers} layers, {c.heads} heads, context {c.seq_len} tokens, dropout {c.dropout} in "
            f"training (embeddings and residual branches; off at inference), {s['parameters']:,} "
            f"parameters; weights stored as {o['save_dtype']} (`model.safetensors`, {s['shipped_weights']} weights).",
            f"- Data: {d.get('corpus', '?')} corpus train split ({d.get('train_tokens', '?')} tokens; {d.get('source', '')}), "
            f"`{c.seq_len}`-token windows, every start offset once per epoch in a seeded order; validation on the held-out "
            f"split ({d.get('valid_tokens', '?')} tokens, {d.get('valid_windows_used', '?')} fixed windows).",
            f"- Tokenizer: `tokenizer.model` (SentencePiece BPE, {d.get('vocab_size', '?')} pieces, sha256 "
            f"`{d.get('tokenizer_sha256', '?')}`); id {d.get('eot_id', 2)} ends a document; ids 0, 1, 3 are never predicted.",
            f"- Training: {s['steps']} steps of {o['batch_size']} x {c.seq_len} tokens ({s['epochs']} epochs) in "
            f"{s['seconds']} s over {len(sessions)} session(s) on {', '.join(devices)} (torch {s['torch']}); AdamW lr {o['lr']} "
            f"(betas {o['beta1']}, {o['beta2']}, weight decay {o['weight_decay']}, warmup {o['warmup']}, cosine to "
            f"{o['min_lr_ratio']}x at step {s['planned_steps']}), EMA {o['ema_decay'] or o['ema_std'] or 'none'}"
            f"{' (EDM2 power EMA, sigma_rel)' if o['ema_std'] else ''}, bf16 autocast on CUDA, seed {o['seed']}.",
            f"- Result: validation loss {shipped.get('loss', float('nan')):.4f} nats/token for the shipped weights (step "
            f"{shipped.get('step', '?')}); {s['final_valid_loss']:.4f} at the last step {s['steps']}; curves in `loss.png`, "
            "numbers in `train_log.json`.",
            "",
            "Reproduce (the run's sessions, in order; `--resume` continues the checkpoint):",
            "",
            "```",
            *commands,
            "```",
            "",
            "Use:",
            "",
            "```python",
            self.card_usage(name),
            "```",
            "",
        ]
        return "\n".join(lines)
