"""Pairs (noise, tokens) of the teacher's noise -> tokens map, written in resumable shards (arXiv 2412.17153, sec. 3.3).

    python -m decoding.dd.pairs --teacher models/fashion-ar --out runs/dd/pairs --pairs 262144 \\
        --shard-size 8192 --batch-size 2048 --guidance 1.5 --device cuda

Shard ``i`` holds ``shard_size`` pairs drawn from its own seed (``seed * 1_000_003 + i``): class labels
uniform over the classes, replaced by the null class (unconditional; CFG does not change it) with
probability ``uncond_share``, noise ``(S, n, D)`` float32 standard Gaussian, and the tokens ``(S, n)``
(int16) the teacher's map gives them through :func:`decoding.decode` with
:class:`~decoding.dd.process.FlowTokens`. A shard is written atomically (``pairs-00007.safetensors``);
a run that is stopped and started again skips the shards that exist, so the output does not
depend on where it was interrupted. ``meta.json`` records the settings; a later run with other
settings is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.core.loop import decode
from decoding.data.weights import load_tensors, save_tensors
from decoding.dd.flow import TokenFlow
from decoding.dd.process import FlowTokens
from decoding.io import atomic_write_bytes
from decoding.models.ar_image import ARImageModel, class_tokens

MAX_SHARD_BYTES = 16 * 2**20


@dataclass(frozen=True)
class PairSettings:
    """What fixes the pairs (a resumed run must give the same)."""

    teacher: str
    guidance: float
    flow_steps: int
    seed: int
    shard_size: int
    num_tokens: int
    code_dim: int
    num_classes: int
    uncond_share: float = 0.1


def map_noise(model: ARImageModel, codes: Tensor, labels: Tensor, noise: Tensor, flow: TokenFlow,
              sync_every: int | None = None) -> Tensor:
    """The teacher's map: ``noise`` ``(B, n, D)`` and ``labels`` ``(B,)`` -> tokens ``(B, n)`` long (deterministic)."""
    prompt = {"input_ids": class_tokens(labels, model.cfg).to(noise.device), "noise": noise}
    res = decode(model, FlowTokens(codes, flow), prompt, steps=noise.shape[1], seed=0, sync_every=sync_every)
    return res.x[:, 1:]


def shard_bytes(settings: PairSettings) -> int:
    """Bytes of one shard's tensors (noise float32, tokens int16, labels int64)."""
    s = settings
    return s.shard_size * (s.num_tokens * s.code_dim * 4 + s.num_tokens * 2 + 8)


def make_shard(model: ARImageModel, codes: Tensor, settings: PairSettings, index: int, batch_size: int,
               flow: TokenFlow) -> dict[str, Tensor]:
    """The tensors of shard ``index`` (``noise``, ``tokens``, ``labels``), on the CPU."""
    dev = model.device
    g = torch.Generator(device=dev).manual_seed(settings.seed * 1_000_003 + index)
    n, s = settings.num_tokens, settings.shard_size
    labels = torch.randint(0, settings.num_classes, (s,), generator=g, device=dev)
    uncond = torch.rand((s,), generator=g, device=dev) < settings.uncond_share
    labels = torch.where(uncond, settings.num_classes, labels)
    noise = torch.randn((s, n, settings.code_dim), generator=g, device=dev)
    tokens = torch.cat([map_noise(model, codes, labels[lo : lo + batch_size], noise[lo : lo + batch_size], flow)
                        for lo in range(0, s, batch_size)])
    return {"noise": noise.float().cpu(), "tokens": tokens.to(torch.int16).cpu(), "labels": labels.cpu()}


def shard_path(out: Path, index: int) -> Path:
    return out / f"pairs-{index:05d}.safetensors"


def generate_pairs(model: ARImageModel, codes: Tensor, out: str | Path, pairs: int, settings: PairSettings,
                   batch_size: int, minutes: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the missing shards of ``ceil(pairs / shard_size)`` into ``out``; stop early after ``minutes``.

    Returns ``{"shards": total, "written": this call, "done": all present, "seconds": ...}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if shard_bytes(settings) > MAX_SHARD_BYTES:
        raise ValueError(f"--shard-size {settings.shard_size} makes {shard_bytes(settings) / 2**20:.1f} MiB shards; "
                         f"keep each file under 16 MiB (at most {MAX_SHARD_BYTES // (shard_bytes(settings) // settings.shard_size)} pairs)")
    meta_path = out / "meta.json"
    meta = asdict(settings)
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{out} holds pairs made with other settings {diff} (old, new); use another --out folder")
    else:
        atomic_write_bytes(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
    total = -(-pairs // settings.shard_size)
    todo = [i for i in range(total) if not shard_path(out, i).is_file()]
    flow = TokenFlow(steps=settings.flow_steps)
    start, written = time.perf_counter(), 0
    for i in tqdm(todo, desc="pair shards", disable=not progress):
        if minutes is not None and written and (time.perf_counter() - start) / written * (written + 1) > 60 * minutes:
            break
        save_tensors(make_shard(model, codes, settings, i, batch_size, flow), shard_path(out, i),
                     metadata={k: str(v) for k, v in meta.items()})
        written += 1
    left = sum(not shard_path(out, i).is_file() for i in range(total))
    return {"shards": total, "written": written, "done": left == 0, "seconds": time.perf_counter() - start}


def load_pairs(folder: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All shards of ``folder`` in index order: ``noise (N, n, D)`` float32, ``tokens (N, n)`` long, ``labels (N,)``; and meta."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(f"{folder} has no meta.json: not a pair folder written by python -m decoding.dd.pairs")
    meta = json.loads((folder / "meta.json").read_text())
    files = sorted(folder.glob("pairs-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no pairs-*.safetensors shards yet")
    parts = [load_tensors(f)[0] for f in files]
    data = {k: torch.cat([p[k] for p in parts]).to(device) for k in ("noise", "tokens", "labels")}
    data["tokens"] = data["tokens"].long()
    return data, meta


def main(argv: list[str] | None = None) -> int:
    from decoding.api.image_ar import load_teacher_parts

    p = argparse.ArgumentParser(prog="python -m decoding.dd.pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="the AR teacher's folder or zoo name (kind image-ar)")
    p.add_argument("--out", required=True, type=Path, help="folder of the shards (resumable)")
    p.add_argument("--pairs", type=int, required=True, help="pairs in all (rounded up to whole shards)")
    p.add_argument("--shard-size", type=int, default=8192, help="pairs per shard file (<= 16 MiB each)")
    p.add_argument("--batch-size", type=int, default=1024, help="rows decoded together")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale of the teacher (default: its card's)")
    p.add_argument("--flow-steps", type=int, default=TokenFlow().steps, help="ODE steps of the per-token flow")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--uncond-share", type=float, default=0.1, help="share of unconditional pairs (null class)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--minutes", type=float, help="stop (cleanly, between shards) before this many minutes")
    a = p.parse_args(argv)
    if a.pairs < 1 or a.shard_size < 1 or a.batch_size < 1:
        p.error("--pairs, --shard-size and --batch-size must be >= 1")
    if not 0.0 <= a.uncond_share <= 1.0:
        p.error("--uncond-share must lie in [0, 1]")
    model, vq, card = load_teacher_parts(a.teacher, torch.device(a.device), a.guidance)
    settings = PairSettings(teacher=str(a.teacher), guidance=model.guidance, flow_steps=a.flow_steps, seed=a.seed,
                            shard_size=a.shard_size, num_tokens=model.cfg.num_tokens, code_dim=vq.cfg.code_dim,
                            num_classes=model.cfg.num_classes, uncond_share=a.uncond_share)
    res = generate_pairs(model, vq.codes.detach(), a.out, a.pairs, settings, a.batch_size, a.minutes)
    state = "all shards present" if res["done"] else "more shards to write: run the same command again"
    print(f"{a.out}: wrote {res['written']} shard(s) in {res['seconds']:.1f} s; {res['shards']} in all; {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
