"""Any transformers causal LM (a local folder or a GGUF file, no network) as an engine model.

:class:`HFCausalLM` is ``state -> Prediction(logits (B, V))``: the first call runs the whole
left-padded prompt, later calls feed only the tokens the KV cache has not seen. The cache is a
transformers ``DynamicCache`` carried in ``state.memory["hf_cache"]`` with the number of tokens it
covers (``kv_len``); a state with a shorter ``kv_len`` crops the cache back (rollback). The cache
object itself is mutable, so two states descending from one prompt cannot both be continued
(the second one is refused with a clear error).

Positions follow ``generate()``: ``position_ids = cumsum(attention_mask) - 1``, so a left-padded
row gets the logits of the same prompt alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.core.types import Prediction, State
from decoding.nn.transformer import check_token_ids

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device | str = "cpu") -> torch.dtype:
    """``"bfloat16"`` / ``"bf16"`` / ... -> torch dtype; ``None`` or ``"auto"``: float32 on CPU, bfloat16 on CUDA."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16 or auto")
    return DTYPES[key]


def resolve_source(name_or_path: str | Path) -> tuple[Path, str | None]:
    """``(folder, gguf_file_name or None)`` for ``'smollm2'``, a transformers folder or a ``.gguf`` file."""
    if str(name_or_path).lower() in ("smollm2", "smollm2-135m", "smollm2-135m-instruct"):
        from decoding.adapters.smollm2 import smollm2_dir

        return smollm2_dir(), None
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model {str(name_or_path)!r} not found: give 'smollm2', a transformers folder (config.json + "
            "safetensors) or a .gguf file (no downloads)"
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"{path} is a file but not a .gguf file; give a model folder or a GGUF file")
        return path.parent, path.name
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json: it is not a transformers model folder")
    return path, None


def check_causal_lm(folder: Path, gguf_file: str | None) -> Any:
    """Load the config and make sure it names a decoder-only causal LM; returns the config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        cfg = AutoConfig.from_pretrained(folder, gguf_file=gguf_file, local_files_only=True)
    except Exception as e:  # transformers raises several kinds for foreign folders
        raise ValueError(f"{folder / (gguf_file or '')} is not a transformers causal LM: {e}") from None
    model_type = getattr(cfg, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(cfg, "is_encoder_decoder", False):
        raise ValueError(
            f"{folder / (gguf_file or '')} holds a {model_type!r} model, which is not a decoder-only causal LM "
            "(AutoModelForCausalLM); give a causal language model"
        )
    return cfg


def load_hf_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local folder or GGUF file, in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = resolve_source(name_or_path)
    check_causal_lm(folder, gguf)
    torch_dtype = parse_dtype(dtype, device)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch_dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
    return model.to(device).eval(), tokenizer


class HFCausalLM:
    """``state -> Prediction(logits (B, V), memory={"hf_cache", "kv_len"})`` for a transformers causal LM."""

    def __init__(self, model: Any) -> None:
        import inspect

        self.model = model
        params = inspect.signature(model.forward).parameters
        # transformers >= 5.24 names the cache argument ``cache`` (``past_key_values`` before)
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @torch.inference_mode()
    def __call__(self, state: State) -> Prediction:
        from transformers import DynamicCache

        am: Tensor = state.memory["attention_mask"]
        cache = state.memory.get("hf_cache")
        kv_len = int(state.memory.get("kv_len", 0)) if cache is not None else 0
        if cache is None:
            cache = DynamicCache(config=self.model.config)
        else:
            have = int(cache.get_seq_length())
            if have > kv_len:
                cache.crop(kv_len - have)  # negative: drop that many tokens (roll back)
            elif have < kv_len:
                raise ValueError(f"the KV cache holds {have} tokens but the state expects {kv_len}")
        tokens = state.x[:, kv_len:]
        if kv_len == 0:
            check_token_ids(tokens, self.model.get_input_embeddings().num_embeddings)
        positions = (am.long().cumsum(-1) - 1).clamp(min=0)[:, kv_len:]
        out = self.model(
            input_ids=tokens,
            attention_mask=am.long(),
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        memory = {"hf_cache": cache, "kv_len": state.x.shape[1]}  # the cache object was updated in place
        return Prediction(logits=out.logits[:, -1].to(torch.float32, copy=True), memory=memory)

    def merge_rows(self, parts: Sequence[tuple[Mapping[str, Any], Tensor]], kv_len: int, room: int = 0) -> dict[str, Any]:
        """A new ``DynamicCache`` with rows of ``parts`` right-aligned into ``kv_len`` columns
        (see :class:`decoding.core.rows.RowMemory`); the parts' caches are left as they are."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        from decoding.core.rows import shift_columns

        layers = []
        for memory, index in parts:
            cache, have = memory["hf_cache"], int(memory["kv_len"])
            kinds = {type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer}
            if kinds:
                raise TypeError(f"rows of a cache with {sorted(kinds)} layers cannot be re-batched (only DynamicLayer)")
            if int(cache.get_seq_length()) < have:
                raise ValueError(f"the KV cache holds {cache.get_seq_length()} tokens but the state expects {have}")
            shift = kv_len - have
            layers.append([
                (shift_columns(layer.keys[:, :, :have], index, shift, 2),
                 shift_columns(layer.values[:, :, :have], index, shift, 2))
                for layer in cache.layers
            ])
        merged = DynamicCache(config=self.model.config)
        for i, per_part in enumerate(zip(*layers, strict=True)):
            merged.update(torch.cat([k for k, _ in per_part]), torch.cat([v for _, v in per_part]), i)
        return {"hf_cache": merged, "kv_len": kv_len}
