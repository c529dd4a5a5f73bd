"""Any local transformers causal LM through the engine, with a stop string and the KV cache.

    python examples/text_hf_model.py [--model PATH_OR_GGUF] [--engine hf|native|auto]

Without ``--model`` it uses the embedded SmolLM2 folder through the transformers engine.
"""

from __future__ import annotations

import argparse

import decoding as dc
from decoding import decode
from decoding.processes.autoregressive import Autoregressive, generated_tokens
from decoding.processors import standard_processors


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2")
    p.add_argument("--engine", default="hf")
    p.add_argument("--max-new-tokens", type=int, default=40)
    args = p.parse_args(argv)
    lm = dc.load(args.model, device="cpu", engine=args.engine)

    # the decode loop by hand: left-padded batch, KV cache carried in state.memory by the process
    batch = lm.encode(["List three colours.", "Name a large animal."])
    process = Autoregressive(eos_token_id=list(lm.eos_token_ids), pad_token_id=lm.pad_token_id)
    res = decode(lm.model, process, batch, steps=args.max_new_tokens, seed=0,
                 processors=standard_processors(temperature=0.7, top_p=0.9))
    for row, nfe in zip(generated_tokens(res.state), res.nfe.tolist(), strict=True):
        print(f"[{len(row)} tokens, NFE {nfe:.0f}] {lm.decode(row)!r}")
    print(f"{res.steps} steps in {res.seconds:.2f} s on the {lm.engine} engine")


if __name__ == "__main__":
    main()
