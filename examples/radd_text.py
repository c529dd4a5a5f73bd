"""Sample and infill text with a RADD model, with and without the exact cache (arXiv:2406.03736).

    python examples/radd_text.py --model radd-brown --steps 128
    python examples/radd_text.py --model radd-brown --infill "The ____ sat on the mat ." --sampler any_order

The same seed gives the same text with and without caching; the cached run needs fewer network calls.
"""

from __future__ import annotations

import argparse

import decoding as dc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="radd-brown")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--sampler", default="tweedie")
    ap.add_argument("--length", type=int, default=None, help="unconditional length (default: the model's context)")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--infill", default="The ____ sat on the mat , and the ________ .")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    radd = dc.load(args.model, device=args.device)
    for cache in (False, True):
        out = dc.generate(radd, n=args.samples, steps=args.steps, sampler=args.sampler, cache=cache, length=args.length,
                          seed=args.seed)
        print(f"--- unconditional, {args.sampler}, {args.steps} steps, cache={cache}: "
              f"NFE/sample {sum(out.nfe) / len(out):.1f}, {out.seconds:.2f} s")
        for text in out.text:
            print(text.replace("\n", " / "))
    out = dc.generate(radd, args.infill, n=args.samples, steps=args.steps, sampler=args.sampler, seed=args.seed)
    print(f"--- infill {args.infill!r}: NFE/sample {sum(out.nfe) / len(out):.1f}")
    for text in out.text:
        print(text)


if __name__ == "__main__":
    main()
