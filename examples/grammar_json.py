"""Constrain a language model to JSON with a lark grammar.

    python examples/grammar_json.py                          # SmolLM2-135M-Instruct, 4 samples
    python examples/grammar_json.py --grammar arithmetic --prompt "Write a sum:"
    python examples/grammar_json.py --model random --samples 3 --max-tokens 40   # no weights needed

Every sample is a sentence of the grammar (for JSON: ``json.loads`` accepts it). Near
``--max-tokens`` only tokens after which the text can still be completed in time are allowed
(``grammar.constraint(..., max_tokens=N)``); ``--no-budget`` turns that off, and samples may then
stop at the budget as incomplete prefixes. ``--model random`` draws logits at random over
SmolLM2's vocabulary (a deterministic toy model) to show that even a model that knows nothing
is kept inside the grammar and finishes in time.
"""

from __future__ import annotations

import argparse
import json

import torch

from decoding import Prediction, State, decode
from decoding.grammar import compile_grammar
from decoding.processes.autoregressive import Autoregressive, generated_tokens


class RandomLM:
    """Seeded random logits ``(B, V)``: a stand-in model for tests and demos."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        self.vocab_size = vocab_size
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, state: State) -> Prediction:
        return Prediction(logits=torch.randn(state.batch_size, self.vocab_size, generator=self.gen) * 3)


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(description="grammar-constrained generation")
    ap.add_argument(
        "--grammar",
        default="json",
        help="built-in name (json, arithmetic, csv, sql_select, binary) or .lark path",
    )
    ap.add_argument("--model", default="smollm2", help="'smollm2' (or a model folder) or 'random'")
    ap.add_argument(
        "--prompt", default="Describe a book as a JSON object with a title, an author and a year."
    )
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-budget", action="store_true", help="let samples stop incomplete at --max-tokens")
    args = ap.parse_args(argv)

    if args.model == "random":
        from transformers import AutoTokenizer

        from decoding.adapters.smollm2 import smollm2_dir

        tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
        model = RandomLM(len(tokenizer), args.seed)
        eos = int(tokenizer.eos_token_id)
        prompt = torch.tensor([[eos]] * args.samples)
    else:
        import decoding as dc

        lm = dc.load(args.model, device="cpu")
        tokenizer, model, eos = lm.tokenizer, lm.model, lm.eos_token_ids[0]
        text = lm.prompt_text(args.prompt)
        prompt = torch.tensor([tokenizer.encode(text)] * args.samples)

    grammar = compile_grammar(args.grammar, tokenizer, eos_token_id=eos)
    constraint = grammar.constraint(args.samples, max_tokens=None if args.no_budget else args.max_tokens)
    result = decode(
        model,
        Autoregressive(eos_token_id=eos),
        prompt,
        steps=args.max_tokens,
        constraint=constraint,
        seed=args.seed,
    )
    texts, complete = [], 0
    for row, ids in enumerate(generated_tokens(result.state)):
        finished = bool(ids) and ids[-1] == eos
        text = grammar.vocab.decode([i for i in ids if i != eos]).decode("utf-8", "replace")
        if finished and args.grammar == "json":
            json.loads(text)  # a finished sample is valid JSON
        status = "complete" if finished else "stopped at --max-tokens (incomplete)"
        if finished and args.max_tokens and not args.no_budget and constraint.limited[row]:
            status += " (closed near the token budget)"
        print(f"[{row}] {status}: {text}")
        texts.append(text)
        complete += finished
    check = " (each complete one parses with json.loads)" if args.grammar == "json" else ""
    print(f"{complete} of {len(texts)} samples complete{check}; {result.seconds:.1f} s")
    return texts


if __name__ == "__main__":
    main()
