"""Text tasks: the models and decoders an eval suite can name, and the job that draws text samples.

Each entry of :data:`MODELS` / :data:`DECODERS` is a small adapter from suite settings to the
engine's pieces; adding a decoder to the evals is one function here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from decoding.core.loop import decode
from decoding.core.protocols import Constraint, Model, Processor
from decoding.evals.base import Batch, take_args
from decoding.evals.markov import MarkovLM, random_chain
from decoding.evals.suite import TaskSpec
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors import standard_processors


@dataclass
class EvalLM:
    """A language model with what the evals need around it.

    Attributes:
        model: the engine model (``state -> Prediction(logits (B, V))``).
        vocab_size: ``V``.
        encode / decode: text <-> token ids (``decode`` leaves special tokens out).
        bos: ids put before every prompt.
        eos_token_id, pad_token_id: ids for the autoregressive process.
        token_logprobs: ``(prompts, continuations) -> per-token log-probabilities`` of each
            continuation under the unprocessed model (for perplexity under the model itself).
        markov: the closed-form chain, when the model is one (exact distributions).
        vocab: the text of every token id, when known.
        grammar_tokenizer: what :func:`decoding.grammar.compile_grammar` takes as the tokenizer
            (None: grammar constraints are not available for this model).
    """

    name: str
    model: Model
    vocab_size: int
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    bos: list[int]
    eos_token_id: int | None
    pad_token_id: int
    device: torch.device
    token_logprobs: Callable[[list[list[int]], list[list[int]]], list[list[float]]] | None = None
    markov: MarkovLM | None = None
    vocab: list[str] | None = None
    grammar_tokenizer: Any = None
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- models


def markov_model(args: dict[str, Any], device: torch.device) -> EvalLM:
    """A closed-form Markov chain (:class:`~decoding.evals.markov.MarkovLM`).

    Args (suite ``model_args``): ``alphabet`` (string, one character per token; default
    ``"abc$"``), ``eos`` (the EOS character, default ``"$"``; ``""`` for none), ``transition``
    (explicit ``(V, V)`` rows) or ``seed`` + ``concentration`` (random Dirichlet rows), ``start``
    (the start token's character, default the first one).
    """
    a = take_args(
        "model markov",
        args,
        {"alphabet": "abc$", "eos": "$", "transition": None, "seed": 0, "concentration": 1.0, "start": None},
    )
    alphabet = list(a["alphabet"])
    if len(set(alphabet)) != len(alphabet):
        raise ValueError(f"model markov: alphabet {a['alphabet']!r} repeats a character")
    eos = alphabet.index(a["eos"]) if a["eos"] else None
    if a["eos"] and a["eos"] not in alphabet:
        raise ValueError(f"model markov: eos {a['eos']!r} is not in the alphabet {a['alphabet']!r}")
    p = (
        torch.tensor(a["transition"], dtype=torch.float64)
        if a["transition"] is not None
        else random_chain(len(alphabet), a["seed"], a["concentration"])
    )
    chain = MarkovLM(p, alphabet, eos)
    start = alphabet.index(a["start"]) if a["start"] is not None else 0

    def encode(text: str) -> list[int]:
        try:
            return [alphabet.index(c) for c in text]
        except ValueError:
            raise ValueError(
                f"model markov: prompt {text!r} uses characters outside {a['alphabet']!r}"
            ) from None

    def logprobs(prompts: list[list[int]], conts: list[list[int]]) -> list[list[float]]:
        return [chain.logprob(p[-1], c) for p, c in zip(prompts, conts, strict=True)]

    return EvalLM(
        name="markov",
        model=chain,
        vocab_size=chain.vocab_size,
        encode=encode,
        decode=chain.text,
        bos=[start],
        eos_token_id=eos,
        pad_token_id=eos if eos is not None else 0,
        device=device,
        token_logprobs=logprobs,
        markov=chain,
        vocab=alphabet,
        grammar_tokenizer=[None if i == eos else c.encode() for i, c in enumerate(alphabet)],
    )


def tiny_transformer_model(args: dict[str, Any], device: torch.device) -> EvalLM:
    """A randomly initialised byte-level :class:`~decoding.nn.transformer.Transformer` (seeded).

    Exercises the real KV-cached model path at no download cost. Vocabulary: 256 bytes + BOS (256).
    Args: ``dim``, ``layers``, ``heads``, ``max_len``, ``seed``, ``init_std`` (weight scale;
    larger makes the random model peakier).
    """
    from decoding.adapters.native import NativeCausalLM
    from decoding.nn.transformer import Transformer, TransformerConfig

    a = take_args(
        "model tiny-transformer",
        args,
        {"dim": 64, "layers": 2, "heads": 4, "max_len": 256, "seed": 0, "init_std": 0.02},
    )
    torch.manual_seed(int(a["seed"]))  # nn.Module init draws from the global generator
    net = Transformer(
        TransformerConfig(
            vocab_size=257, dim=a["dim"], n_layers=a["layers"], n_heads=a["heads"], max_len=a["max_len"]
        )
    )
    if a["init_std"] != 0.02:
        g = torch.Generator().manual_seed(int(a["seed"]))
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * float(a["init_std"]))
    net = net.to(device).eval()
    lm = NativeCausalLM(net)

    def logprobs(prompts: list[list[int]], conts: list[list[int]]) -> list[list[float]]:
        out = []
        with torch.inference_mode():
            for p, c in zip(prompts, conts, strict=True):
                ids = torch.tensor([p + c], device=device)
                logits, _ = net(ids)
                lp = torch.log_softmax(logits[0, len(p) - 1 : -1].float(), -1)
                out.append(lp.gather(-1, ids[0, len(p) :, None])[:, 0].tolist())
        return out

    return EvalLM(
        name="tiny-transformer",
        model=lm,
        vocab_size=257,
        encode=lambda s: list(s.encode("utf-8")),
        decode=lambda ids: bytes(i for i in ids if i < 256).decode("utf-8", errors="replace"),
        bos=[256],
        eos_token_id=None,
        pad_token_id=0,
        device=device,
        token_logprobs=logprobs,
    )


def causal_lm_model(args: dict[str, Any], device: torch.device) -> EvalLM:
    """A real causal LM through :func:`decoding.adapters.text_lm.load_text_lm` (local files only).

    Args: ``name`` (``"smollm2"``, a transformers folder or a ``.gguf`` file), ``engine``
    (``auto``, ``native``, ``hf``), ``dtype``. Prompts are used as plain text (no chat template).
    """
    from decoding.adapters.text_lm import load_text_lm

    a = take_args("model lm", args, {"name": "smollm2", "engine": "auto", "dtype": None})
    lm = load_text_lm(a["name"], device=device, dtype=a["dtype"], engine=a["engine"])
    tok = lm.tokenizer
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"] if text else []

    return EvalLM(
        name=f"lm:{a['name']}",
        model=lm.model,
        vocab_size=len(tok),
        encode=encode,
        decode=lambda ids: tok.decode(list(ids), skip_special_tokens=True),
        bos=bos or [lm.eos_token_ids[0]],
        eos_token_id=lm.eos_token_ids[0],
        pad_token_id=lm.pad_token_id,
        device=device,
        grammar_tokenizer=tok,
        info={"max_context": lm.max_context},
    )


MODELS: dict[str, Callable[[dict[str, Any], torch.device], EvalLM]] = {
    "markov": markov_model,
    "tiny-transformer": tiny_transformer_model,
    "lm": causal_lm_model,
}


# -------------------------------------------------------------------------------------------- decoders


@dataclass
class TextDecoder:
    """A decoder bound to its settings: ``generate(lm, prompt_ids, generator) -> (tokens, nfe)``.

    Attributes:
        processors: the state-free processor chain (``None`` when some processor reads the
            sequence, e.g. a repetition penalty): exact-distribution metrics apply it per row.
        max_new_tokens: length limit of a sample.
        save_state / load_state: for decoders that learn across samples (grammar-aligned
            decoding): the runner stores the state with every chunk and resumes from it.
    """

    name: str
    max_new_tokens: int
    generate: Callable[[EvalLM, list[list[int]], torch.Generator], tuple[list[list[int]], list[float]]]
    processors: list[Processor] | None = None
    save_state: Callable[[], bytes] | None = None
    load_state: Callable[[bytes | None], None] | None = None


def left_pad(prompts: list[list[int]], pad: int, device: torch.device) -> dict[str, Tensor]:
    """``input_ids`` and ``attention_mask`` ``(B, Lmax)``, padded on the left."""
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad, dtype=torch.long)
    mask = torch.zeros(len(prompts), n, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if p:
            ids[i, n - len(p) :] = torch.tensor(p)
            mask[i, n - len(p) :] = True
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


PROCESSOR_KEYS = ("temperature", "top_k", "top_p", "min_p", "typical", "repetition_penalty")


def autoregressive_decoder(
    settings: dict[str, Any],
    spec: TaskSpec | None = None,
    suite_dir: Path | None = None,
    constraint_factory: Callable[[EvalLM, int], Constraint] | None = None,
) -> TextDecoder:
    """Left-to-right sampling through :func:`decoding.decode` with the standard processor chain.

    Settings: ``max_new_tokens`` (required), ``greedy``, ``constrain`` (mask tokens with the
    task's grammar, ``data.grammar``), and the processors of
    :func:`decoding.processors.standard_processors` (``temperature``, ``top_k``, ``top_p``,
    ``min_p``, ``typical``, ``repetition_penalty``).
    """
    s = take_args(
        "decoder autoregressive",
        settings,
        {"max_new_tokens": None, "greedy": False, "constrain": False, **dict.fromkeys(PROCESSOR_KEYS)},
    )
    n = s["max_new_tokens"]
    if not isinstance(n, int) or n < 1:
        raise ValueError(
            f"decoder autoregressive: settings.max_new_tokens must be an integer >= 1, got {n!r}"
        )
    procs = standard_processors(**{k: s[k] for k in PROCESSOR_KEYS})
    state_free = s["repetition_penalty"] in (None, 1, 1.0)
    if s["constrain"] and constraint_factory is None:
        from decoding.evals.tasks_grammar import grammar_constraints

        constraint_factory = grammar_constraints(spec, suite_dir)

    def generate(
        lm: EvalLM, prompts: list[list[int]], generator: torch.Generator
    ) -> tuple[list[list[int]], list[float]]:
        process = Autoregressive(
            eos_token_id=lm.eos_token_id, pad_token_id=lm.pad_token_id, greedy=bool(s["greedy"])
        )
        constraint = None if constraint_factory is None else constraint_factory(lm, len(prompts))
        res = decode(
            lm.model,
            process,
            left_pad(prompts, lm.pad_token_id, lm.device),
            steps=n,
            processors=procs,
            constraint=constraint,
            generator=generator,
        )
        return generated_tokens(res.state), res.nfe.tolist()

    return TextDecoder("autoregressive", n, generate, procs if state_free and not s["greedy"] else None)


DECODERS: dict[str, Callable[[dict[str, Any], TaskSpec | None, Path | None], TextDecoder]] = {
    "autoregressive": autoregressive_decoder,
}


# ------------------------------------------------------------------------------------------------- job


@dataclass
class TextJob:
    """Draws text samples: sample ``i`` continues prompt ``i mod len(prompts)``."""

    lm: EvalLM
    decoder: TextDecoder
    prompts: list[str]
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "text"

    def __post_init__(self) -> None:
        self.device = self.lm.device
        self.sequential = self.decoder.load_state is not None
        self.prompt_ids = [self.lm.bos + self.lm.encode(p) for p in self.prompts]
        if not all(self.prompt_ids):
            raise ValueError(f"model {self.lm.name} has no BOS token: every prompt must be non-empty")

    def get_state(self) -> bytes:
        assert self.decoder.save_state is not None
        return self.decoder.save_state()

    def set_state(self, state: bytes | None) -> None:
        assert self.decoder.load_state is not None
        self.decoder.load_state(state)

    def run(self, indices: Sequence[int], generator: torch.Generator) -> Batch:
        prompts = [self.prompt_ids[i % len(self.prompt_ids)] for i in indices]
        start = time.perf_counter()
        tokens, nfe = self.decoder.generate(self.lm, prompts, generator)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        outputs = [
            {"prompt": i % len(self.prompt_ids), "tokens": t, "n_tokens": len(t), "text": self.lm.decode(t)}
            for i, t in zip(indices, tokens, strict=True)
        ]
        return Batch(
            outputs=outputs, nfe=[float(x) for x in nfe], seconds=seconds, data={"prompt_ids": prompts}
        )


def make_job(spec: TaskSpec, lm: EvalLM, decoder: TextDecoder, suite_dir: Path | None) -> TextJob:
    """The job of one config: ``prompts`` from the task (default: one empty prompt after BOS)."""
    if not all(isinstance(p, str) for p in spec.prompts):
        raise ValueError("prompts of a text task must be strings")
    return TextJob(lm, decoder, list(spec.prompts) or [""], dict(spec.data))
