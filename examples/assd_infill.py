"""Fill the blanks of a sentence with an any-subset AR model: ASSD next to sequential any-order sampling.

Both sample the same distribution (arXiv 2504.20456); ASSD needs fewer model calls (NFE).

    python examples/assd_infill.py --model as-arm-brown --k 4 --samples 3
"""

from __future__ import annotations

import argparse

import decoding as dc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="as-arm-brown")
    ap.add_argument("--template", default="The ________ of the ______ was ____________ , and the ______ said that ________ .")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    arm = dc.load(a.model, device=a.device)
    for k in (a.k, 0):
        out = dc.generate(arm, a.template, n=a.samples, speculative=k, seed=a.seed)
        label = f"ASSD k={k}" if k else "sequential"
        print(f"--- {label}: {out.settings['blank_count']} blank tokens, NFE per sample {out.nfe}, {out.seconds:.2f} s")
        for text in out.text:
            print("  ", text)


if __name__ == "__main__":
    main()
