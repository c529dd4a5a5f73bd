"""The launch table of a GPU call: the shipped rows of decoding/nn/fused_decode_tuned.json with their attention rows
replaced by a sweep's (benchmarks/fused_decode_tune.py --kernels decode_attention --out SWEEP), for
DECODING_FUSED_CONFIGS. Prints each attention row against its peer.

    python3 scripts/gpu/attention_rows.py SWEEP.json MERGED.json
"""

import json
import sys


def main(sweep: str, out: str) -> None:
    with open("decoding/nn/fused_decode_tuned.json") as f:
        table = json.load(f)
    try:
        with open(sweep) as f:
            rows = [x for x in json.load(f)["best"] if x["kernel"] == "decode_attention"]
    except (OSError, ValueError, KeyError) as e:
        rows = []
        print("no sweep rows:", e)
    table["best"] = [x for x in table["best"] if x["kernel"] != "decode_attention"] + rows
    with open(out, "w") as f:
        json.dump(table, f, indent=1)
    for x in rows:
        print("attention row: batch", x["batch"], "block", x["block"], "chunk", x["block_k"], "warps", x["warps"],
              "mma" if x.get("mma") else "dot" if x["dot"] else "fma", f"{x['us']:.2f} us;",
              x.get("peer", "peer"), f"{x['peer_us']:.2f} us;", "kernel wins" if x["us"] < x["peer_us"] else "peer wins")


if __name__ == "__main__":
    main(*sys.argv[1:3])
