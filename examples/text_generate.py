"""Sample text from the embedded SmolLM2-135M-Instruct with locally typical sampling.

    python examples/text_generate.py [--max-new-tokens 48] [--device cuda]
"""

from __future__ import annotations

import argparse

import decoding as dc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    lm = dc.load("smollm2", device=args.device)  # converted once from the GGUF, then cached
    prompts = ["Write a haiku about the sea.", "Give me three tips for learning to cook."]
    out = dc.generate(lm, prompts, n=2, max_new_tokens=args.max_new_tokens,
                      sampling=dc.Sampling(typical=0.9, temperature=0.8), seed=0)
    for row in out.rows():
        print(f"--- prompt {row['prompt_index']}: {len(row['tokens'])} tokens ({row['finish_reason']}), NFE {row['nfe']:.0f}")
        print(row["text"])


if __name__ == "__main__":
    main()
