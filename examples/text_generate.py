"""Sample text from the embedded SmolLM2-135M-Instruct with locally typical sampling.

    python examples/text_generate.py [--max-new-tokens 48] [--device cuda]
"""

from __future__ import annotations

import argparse

from decoding.adapters.text_lm import load_text_lm
from decoding.text_api import generate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    lm = load_text_lm("smollm2", device=args.device)  # converted once from the GGUF, then cached
    prompts = ["Write a haiku about the sea.", "Give me three tips for learning to cook."]
    results = generate(lm, prompts, n=2, max_new_tokens=args.max_new_tokens, typical=0.9, temperature=0.8, seed=0)
    for r in results:
        print(f"--- prompt {r.index}, sample {r.sample}: {r.new_tokens} tokens ({r.finish_reason}), NFE {r.nfe:.0f}")
        print(r.text)


if __name__ == "__main__":
    main()
