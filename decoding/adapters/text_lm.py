"""A language model ready for text: engine model + tokenizer + chat template + EOS + context length.

:func:`load_text_lm` takes ``'smollm2'`` (the embedded SmolLM2-135M-Instruct), a transformers
folder or a GGUF file, and picks the engine:

- ``native``: plain Llama checkpoints (SmolLM2, TinyLlama, ...) run on our own transformer with a
  static KV cache (:class:`~decoding.adapters.static_cache.StaticCausalLM`): compiled and replayed
  as CUDA graphs on GPU;
- ``hf``: any other ``AutoModelForCausalLM`` (and GGUF files) through
  :class:`~decoding.adapters.hf.HFCausalLM`.

``engine="auto"`` takes ``native`` when the checkpoint qualifies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from decoding.adapters.hf import HFCausalLM, check_causal_lm, load_hf_model, parse_dtype, resolve_source
from decoding.core.protocols import Model

ENGINES = ("auto", "native", "fused", "hf")


@dataclass
class TextLM:
    """Everything text generation needs about one model.

    Attributes:
        model: the engine model (``state -> Prediction``).
        tokenizer: its transformers tokenizer.
        name: what the user asked for (name or path).
        engine: ``"native"`` or ``"hf"``.
        eos_token_ids: ids that end a sample.
        pad_token_id: id appended after EOS and used for left padding.
        max_context: the longest sequence (prompt + new tokens) the model takes.
        folder: the transformers folder it came from.
    """

    model: Model
    tokenizer: Any
    name: str
    engine: str
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    max_context: int
    folder: Path
    device: torch.device
    dtype: torch.dtype
    kind: str = "causal-lm"

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, prompt: str, chat: bool | None = None) -> str:
        """The text the model sees: the chat template around ``prompt`` (instruct models) or ``prompt``."""
        use_chat = self.has_chat_template if chat is None else chat
        if use_chat and not self.has_chat_template:
            raise ValueError(f"{self.name} has no chat template; run without --chat")
        if not use_chat:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, prompts: Sequence[str], chat: bool | None = None) -> dict[str, torch.Tensor]:
        """Tokenise and left-pad: ``{"input_ids": (B, P) long, "attention_mask": (B, P) bool}`` on the model's device."""
        use_chat = self.has_chat_template if chat is None else chat
        rows = []
        for i, prompt in enumerate(prompts):
            text = self.prompt_text(prompt, use_chat)
            ids = self.tokenizer(text, add_special_tokens=not use_chat)["input_ids"]
            if not ids:
                raise ValueError(f"prompt {i} is empty after tokenisation; give some text (or use --chat)")
            if len(ids) >= self.max_context:
                raise ValueError(
                    f"prompt {i} has {len(ids)} tokens but {self.name} takes at most {self.max_context} "
                    "(prompt + new tokens); shorten the prompt"
                )
            rows.append(ids)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = True
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def load_text_lm(
    name_or_path: str | Path = "smollm2",
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    engine: str = "auto",
    compile: bool | None = None,
    cuda_graphs: bool | None = None,
    capacity: int = 256,
) -> TextLM:
    """Load a causal LM for text generation (local files only).

    Args:
        name_or_path: ``'smollm2'``, a transformers folder, or a ``.gguf`` file.
        device, dtype: where and in which precision (``None``/``"auto"``: float32 on CPU, bfloat16 on CUDA).
        engine: ``"auto"``, ``"native"`` (plain Llama folders only), ``"fused"`` (the native engine
            whose one-token step of up to 8 rows runs as five Triton kernels a layer,
            :mod:`decoding.nn.fused_decode`; CUDA with triton only) or ``"hf"``. ``"auto"`` takes the
            native engine when the checkpoint qualifies, and on a Hopper GPU its one-token steps run
            fused for the batches with measured launches, with programmatic dependent launch
            (``StaticCausalLM(fused="auto")``; the other batches run the compiled unfused step).
        compile, cuda_graphs: for the native engine (defaults: on for CUDA).
        capacity: initial KV-cache slots per row for the native engine (grown when needed).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    from transformers import AutoTokenizer, GenerationConfig

    device = torch.device(device)
    torch_dtype = parse_dtype(dtype, device)
    folder, gguf = resolve_source(name_or_path)
    cfg = check_causal_lm(folder, gguf)
    chosen = engine
    if engine in ("auto", "native", "fused"):
        from decoding.adapters.llama import UnsupportedLlama, native_config

        try:
            if gguf is not None:
                raise UnsupportedLlama("GGUF files load through transformers")
            native_config(cfg.to_dict())
            chosen = "fused" if engine == "fused" else "native"
        except UnsupportedLlama as e:
            if engine in ("native", "fused"):
                raise ValueError(f"{name_or_path} cannot run on the {engine} engine: {e}; use engine='hf'") from None
            chosen = "hf"
    if chosen in ("native", "fused"):
        from decoding.adapters.llama import load_native_llama
        from decoding.adapters.static_cache import StaticCausalLM

        net = load_native_llama(folder, device=device, dtype=torch_dtype)
        model: Model = StaticCausalLM(net, capacity=capacity, compile=compile, cuda_graphs=cuda_graphs,
                                      fused=True if chosen == "fused" else "auto" if engine == "auto" else False)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    else:
        hf_model, tokenizer = load_hf_model(name_or_path, device=device, dtype=torch_dtype)
        model = HFCausalLM(hf_model)
    eos: list[int] = []
    gen_eos = None
    try:
        gen_eos = GenerationConfig.from_pretrained(folder, local_files_only=True).eos_token_id
    except Exception:  # no generation_config.json: fall back to the model config
        gen_eos = getattr(cfg, "eos_token_id", None)
    for e in ([gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])) + [tokenizer.eos_token_id]:
        if e is not None and int(e) not in eos:
            eos.append(int(e))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    max_context = int(getattr(cfg, "max_position_embeddings", None) or 2048)
    return TextLM(
        model=model,
        tokenizer=tokenizer,
        name=str(name_or_path),
        engine=chosen,
        eos_token_ids=tuple(eos),
        pad_token_id=int(pad),
        max_context=max_context,
        folder=folder,
        device=device,
        dtype=torch_dtype,
    )
