"""Sample and infill text with a RADD model, with and without the exact cache (arXiv:2406.03736).

    python examples/radd_text.py --model models/radd-brown --steps 128
    python examples/radd_text.py --model models/radd-brown --infill "The ____ sat on the mat ." --sampler any_order

The same seed gives the same text with and without caching; the cached run needs fewer network calls.
"""

from __future__ import annotations

import argparse

from decoding.text_masked_api import generate_masked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/radd-brown")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--sampler", default="tweedie")
    ap.add_argument("--length", type=int, default=None, help="unconditional length (default: the model's context)")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--infill", default="The ____ sat on the mat , and the ________ .")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    for cache in (False, True):
        out = generate_masked(args.model, steps=args.steps, sampler=args.sampler, cache=cache, length=args.length,
                              num_samples=args.samples, seed=args.seed, device=args.device)
        nfe = sum(out["nfe"]) / len(out["nfe"])
        print(f"--- unconditional, {args.sampler}, {args.steps} steps, cache={cache}: NFE/sample {nfe:.1f}, {out['seconds']:.2f} s")
        for text in out["texts"]:
            print(text.replace("\n", " / "))
    out = generate_masked(args.model, steps=args.steps, sampler=args.sampler, infill=args.infill,
                          num_samples=args.samples, seed=args.seed, device=args.device)
    print(f"--- infill {args.infill!r}: NFE/sample {sum(out['nfe']) / len(out['nfe']):.1f}")
    for text in out["texts"]:
        print(text)


if __name__ == "__main__":
    main()
