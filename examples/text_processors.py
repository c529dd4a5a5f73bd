"""The same prompt under greedy, nucleus, top-k, min-p and typical sampling (one seed each).

    python examples/text_processors.py [--max-new-tokens 40]

Processors are plain functions of the logits; ``decoding.Sampling`` applies them in the
documented order (repetition penalty, temperature, top-k, top-p, min-p, typical).
"""

from __future__ import annotations

import argparse

import decoding as dc

SETTINGS = {
    "greedy": dict(greedy=True),
    "nucleus 0.9": dict(top_p=0.9),
    "top-k 40": dict(top_k=40),
    "min-p 0.1": dict(min_p=0.1),
    "typical 0.2": dict(typical=0.2),
    "typical 0.9 + repetition 1.2": dict(typical=0.9, repetition_penalty=1.2),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-new-tokens", type=int, default=40)
    args = p.parse_args(argv)
    lm = dc.load("smollm2", device="cpu")
    prompt = "Once upon a time, in a small village by the sea,"
    for name, kw in SETTINGS.items():
        out = dc.generate(lm, prompt, max_new_tokens=args.max_new_tokens, chat=False, seed=1, sampling=dc.Sampling(**kw))
        print(f"[{name}] {prompt}{out.text[0]}\n")


if __name__ == "__main__":
    main()
