"""Grammar-aligned decoding (ASAp, arXiv 2405.21047) on the paper's binary grammar.

    python examples/aligned_binary.py                  # 2000 samples each, about 10 s
    python examples/aligned_binary.py --samples 200 --batch-size 8

A model that says 0, 1 or EOS with probability 1/3 each, and the grammar "00000" or any length-5
string starting with 1 (grammars/binary.lark, compiled by decoding.grammar). Every sentence has
the same model probability 3^-6, so the model conditioned on the grammar picks each of the 17
with probability 1/17. Plain constrained decoding picks "00000" half of the time; ASAp learns
the expected future grammaticality of each prefix and converges to 1/17.
"""

from __future__ import annotations

import argparse

import torch

from decoding import Prediction, State, decode
from decoding.aligned import ASAp, generate_aligned
from decoding.grammar import compile_grammar
from decoding.processes.autoregressive import Autoregressive, generated_tokens

EOS = 2


class UniformModel:
    """Logits zero over {"0", "1", EOS}: every token has probability 1/3."""

    def __call__(self, state: State) -> Prediction:
        return Prediction(logits=torch.zeros(state.batch_size, 3))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument(
        "--batch-size", type=int, default=1, help="ASAp rows per decode call (trie updated after each)"
    )
    ap.add_argument("--trie", help="save the ASAp trie here (safetensors); reloaded on the next run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    grammar = compile_grammar("binary", [b"0", b"1", None], eos_token_id=EOS)
    prompt = torch.zeros(1, dtype=torch.long)  # a start token the uniform model ignores

    plain = decode(
        UniformModel(),
        Autoregressive(eos_token_id=EOS, pad_token_id=EOS),
        prompt.expand(args.samples, 1),
        steps=8,
        constraint=grammar.constraint(batch_size=args.samples),
        seed=args.seed,
    )
    aligned = generate_aligned(
        UniformModel(),
        lambda b: grammar.constraint(batch_size=b),
        prompt,
        num_samples=args.samples,
        max_new_tokens=8,
        eos_token_id=EOS,
        batch_size=args.batch_size,
        trie=args.trie if args.trie else ASAp(EOS),
        signature="uniform model, binary grammar",
        seed=args.seed,
    )
    freqs = {}
    for name, seqs in (("constrained", generated_tokens(plain.state)), ("ASAp", aligned.sequences)):
        words = ["".join(str(t) for t in s if t != EOS) for s in seqs]
        freqs[name] = {w: words.count(w) / len(words) for w in sorted(set(words))}
    print(f"{'string':8s} {'ideal':>7s} {'constrained':>12s} {'ASAp':>7s}")
    for w in ["00000"] + [f"1{i:04b}" for i in range(16)]:
        print(f"{w:8s} {1 / 17:7.4f} {freqs['constrained'].get(w, 0):12.4f} {freqs['ASAp'].get(w, 0):7.4f}")
    print(f"trie: {aligned.asap.num_nodes} nodes after {aligned.asap.samples} samples")
    return freqs


if __name__ == "__main__":
    main()
