"""Grammar-aligned decoding (ASAp, arXiv 2405.21047) with SmolLM2 and a lark grammar.

    python examples/aligned_smollm2.py                                   # 8 samples, trie in /tmp
    python examples/aligned_smollm2.py --n 32 --trie colors.safetensors  # run again: it keeps learning

The trie file remembers what earlier samples taught ASAp about each prefix, so later runs (and
later samples of the same run) come closer to the model's own distribution over the grammar's
sentences. The same as ``decoding generate smollm2 PROMPT --grammar GRAMMAR --aligned --trie PATH``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import decoding as dc

COLORS = 'start: "red" | "green" | "blue" | "yellow" | "purple" | "orange" | "black" | "white"\n'


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--grammar", default=COLORS, help="built-in name, .lark path or lark text (default: 8 colors)"
    )
    ap.add_argument("--prompt", default="Name a color. Answer with one lowercase word.")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument(
        "--trie", type=Path, default=Path(tempfile.gettempdir()) / "aligned_smollm2_colors.safetensors"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    lm = dc.load("smollm2", device="cpu")
    out = dc.generate(lm, args.prompt, n=args.n, max_new_tokens=args.max_new_tokens, grammar=args.grammar,
                      aligned=True, trie=args.trie, batch_size=args.batch_size, seed=args.seed)
    for i, (text, reason) in enumerate(zip(out.text, out.finish_reason, strict=True)):
        print(f"[{i}] {text!r}{'' if reason == 'eos' else '  (cut at max-new-tokens)'}")
    print(f"trie {args.trie}: {out.settings['trie_samples']} samples so far")
    return out.text


if __name__ == "__main__":
    main()
