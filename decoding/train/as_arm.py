"""Train an any-subset autoregressive model (AS-ARM) on a pre-tokenized corpus (torch only).

Objective (any-order autoregression; Uria et al. arXiv 1310.1757, Shih et al. arXiv 2205.13554,
Guo & Ermon arXiv 2504.20456): per window of ``L`` tokens draw a masking rate ``r ~ U(0, 1)``, keep
``floor((1 - r) L)`` random positions visible (rank 0) and order the other ``T`` positions — uniformly at
random, or left to right with probability ``--l2r-fraction`` (the order infilling decodes in); the loss is
the mean cross-entropy of the whole chain ``p(x_sigma(j) | visible, x_sigma(<j))``, all ``T`` rows from one
two-stream pass (:func:`decoding.nn.any_subset.chain_query`). Random orders also train every draft row
ASSD asks (a target given a revealed set that skips earlier targets).

Writes ``models/as-arm-<name>/``: ``config.json``, ``model.safetensors`` (float16 by default; the weights with
the best validation loss), ``tokenizer.model``, ``log.json``, ``loss.png`` (when matplotlib is installed;
otherwise run ``--plot-only`` later) and ``README.md`` (model card).

GPU (one H100, about 7 minutes)::

    python -m decoding.train.as_arm --data data/brown-sp4k-tokens.safetensors --name brown --minutes 7 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from decoding.data.text_corpus import fixed_windows, load_token_file, random_windows
from decoding.nn.any_subset import AnySubsetQuery, AnySubsetTransformer, chain_query, save_any_subset
from decoding.nn.transformer import TransformerConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def training_batch(windows: Tensor, generator: torch.Generator, l2r_fraction: float = 0.5) -> tuple[AnySubsetQuery, Tensor]:
    """A random visible set and target order per window.

    Args:
        windows: ``(B, L)`` long token windows.
        generator: random source on ``windows.device``.
        l2r_fraction: probability that a window's targets are ordered left to right.

    Returns:
        the query (chain rows only) and labels ``(B, T)`` (``-100`` on padding).
    """
    b, n = windows.shape
    dev = windows.device
    rate = torch.rand(b, generator=generator, device=dev)
    n_vis = ((1 - rate) * n).floor().long().clamp(0, n - 1)
    keys = torch.rand(b, n, generator=generator, device=dev)
    slot = torch.argsort(torch.argsort(keys, 1), 1)  # a uniformly random rank of every position
    visible = slot < n_vis[:, None]
    l2r = torch.rand(b, 1, generator=generator, device=dev) < l2r_fraction
    okey = torch.where(l2r, torch.arange(n, device=dev, dtype=keys.dtype).expand(b, n), torch.rand(b, n, generator=generator, device=dev))
    okey = torch.where(visible, float("inf"), okey)
    t_max = int((n - n_vis).max())
    order = torch.argsort(okey, 1)[:, :t_max]
    order = torch.where(torch.arange(t_max, device=dev) < (n - n_vis)[:, None], order, -1)
    labels = torch.where(order >= 0, windows.gather(1, order.clamp(min=0)), -100)
    return chain_query(windows, visible, order), labels


def chain_loss(net: AnySubsetTransformer, windows: Tensor, generator: torch.Generator, l2r_fraction: float) -> Tensor:
    """Mean cross-entropy (nats per target token) of the chain on a random split of ``windows``."""
    query, labels = training_batch(windows, generator, l2r_fraction)
    logits = net(query)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@dataclass
class TrainConfig:
    """Options of :func:`train` (the CLI flags, see ``--help``)."""

    data: str = "data/brown-sp4k-tokens.safetensors"
    out: str | None = None
    name: str = "brown"
    minutes: float = 7.0
    max_steps: int = 1_000_000
    seq_len: int = 128
    batch: int = 128
    dim: int = 256
    layers: int = 6
    heads: int = 4
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.1
    l2r_fraction: float = 0.5
    eval_every: int = 250
    eval_windows: int = 256
    device: str = "auto"
    seed: int = 0
    save_dtype: str = "float16"
    threads: int | None = None
    progress: bool = True


def _lr(cfg: TrainConfig, step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return cfg.lr * warm * cos


@torch.no_grad()
def evaluate(net: AnySubsetTransformer, windows: Tensor, batch: int, l2r_fraction: float, seed: int, autocast: bool) -> float:
    """Mean chain cross-entropy on fixed windows with fixed random splits (same every call)."""
    net.eval()
    g = torch.Generator(device=windows.device).manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, windows.shape[0], batch):
        w = windows[i : i + batch]
        query, labels = training_batch(w, g, l2r_fraction)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = net(query)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum")
        total += float(ce)
        count += int((labels >= 0).sum())
    net.train()
    return total / max(count, 1)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, keep the weights with the best validation loss, write the model folder; returns the log."""
    if cfg.minutes <= 0 or cfg.max_steps < 1:
        raise ValueError("minutes must be > 0 and max_steps >= 1")
    if not 0.0 <= cfg.l2r_fraction <= 1.0:
        raise ValueError(f"l2r_fraction must lie in [0, 1], got {cfg.l2r_fraction}")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, dev)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, dev: torch.device) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    streams, meta = load_token_file(cfg.data)
    vocab = int(meta["vocab_size"])
    train_stream = streams["train"].to(dev)
    valid = fixed_windows(streams["valid"], cfg.seq_len)[: cfg.eval_windows].to(dev)
    tcfg = TransformerConfig(vocab_size=vocab, dim=cfg.dim, n_layers=cfg.layers, n_heads=cfg.heads, max_len=cfg.seq_len, causal=False)
    net = AnySubsetTransformer(tcfg).to(dev).train()
    n_params = sum(p.numel() for p in net.parameters())
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), fused=dev.type == "cuda",
    )
    autocast = dev.type == "cuda"
    g = torch.Generator(device=dev).manual_seed(cfg.seed)
    budget = cfg.minutes * 60.0
    log: dict[str, Any] = {"train": [], "valid": []}
    best = (float("inf"), None, 0)
    start = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, desc="as-arm", disable=not cfg.progress, mininterval=2.0)
    step, tokens_seen = 0, 0
    best = _eval_and_keep(cfg, net, valid, autocast, step, start, log, best)  # the untrained loss (~ log V)
    while step < cfg.max_steps:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
        lr = _lr(cfg, step, max(step / cfg.max_steps, elapsed / budget))
        for group in opt.param_groups:
            group["lr"] = lr
        windows = random_windows(train_stream, cfg.seq_len, cfg.batch, g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = chain_loss(net, windows, g, cfg.l2r_fraction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += windows.numel()
        if step % 25 == 0 or step == 1:  # syncs with the GPU only here
            value = float(loss.detach())
            log["train"].append({"step": step, "loss": value, "lr": lr, "seconds": round(time.perf_counter() - start, 2)})
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}")
        if step % cfg.eval_every == 0:
            best = _eval_and_keep(cfg, net, valid, autocast, step, start, log, best)
        bar.update(1)
    bar.close()
    if not log["valid"] or log["valid"][-1]["step"] != step:
        best = _eval_and_keep(cfg, net, valid, autocast, step, start, log, best)
    seconds = time.perf_counter() - start
    if best[1] is not None:
        net.load_state_dict(best[1])
    out = Path(cfg.out) if cfg.out else REPO_ROOT / "models" / f"as-arm-{cfg.name}"
    summary = {
        "steps": step,
        "tokens_seen": tokens_seen,
        "seconds": round(seconds, 1),
        "best_valid_loss": best[0],
        "best_step": best[2],
        "params": n_params,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
    }
    log.update({"config": cfg.__dict__, "data_meta": meta, "summary": summary})
    _write_folder(cfg, net.cpu(), out, meta, log)
    return log


def _eval_and_keep(cfg, net, valid, autocast, step, start, log, best):  # noqa: ANN001, ANN202
    val = evaluate(net, valid, cfg.batch, cfg.l2r_fraction, cfg.seed + 1, autocast)
    log["valid"].append({"step": step, "loss": val, "seconds": round(time.perf_counter() - start, 2)})
    if val < best[0]:
        return (val, {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}, step)
    return best


def _write_folder(cfg: TrainConfig, net: AnySubsetTransformer, out: Path, meta: dict[str, str], log: dict[str, Any]) -> None:
    dtype = getattr(torch, cfg.save_dtype)
    tok_rel = meta.get("tokenizer")
    extra = {
        "seq_len": cfg.seq_len,
        "mask_token_id": int(meta["vocab_size"]),
        "banned_tokens": [0, 1, 3],  # <unk>, <s>, <pad> never appear in training windows
        "eot_id": int(meta.get("eot_id", 2)),
        "tokenizer": "tokenizer.model",
        "tokenizer_sha256": meta.get("tokenizer_sha256"),
        "corpus": meta.get("corpus"),
    }
    save_any_subset(net, out, extra=extra, dtype=dtype)
    if tok_rel:
        src = Path(tok_rel) if Path(tok_rel).is_absolute() else REPO_ROOT / tok_rel
        if src.is_file():
            shutil.copyfile(src, out / "tokenizer.model")
    (out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    plot_loss(out)
    write_card(out, log)


def plot_loss(folder: Path) -> Path | None:
    """Write ``loss.png`` from ``log.json`` (skipped with a note when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: run `python -m decoding.train.as_arm --plot-only {folder}` later", file=sys.stderr)
        return None
    log = json.loads((Path(folder) / "log.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    tr, va = log["train"], log["valid"]
    ax.plot([r["step"] for r in tr], [r["loss"] for r in tr], lw=0.8, label="train (batch)")
    ax.plot([r["step"] for r in va], [r["loss"] for r in va], "o-", ms=3, label="valid")
    ax.set_xlabel("step")
    ax.set_ylabel("chain cross-entropy (nats / token)")
    ax.set_title(f"AS-ARM {Path(folder).name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(folder) / "loss.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_card(folder: Path, log: dict[str, Any]) -> Path:
    """Write the model card ``README.md`` from the training log."""
    c, s, m = log["config"], log["summary"], log.get("data_meta", {})
    name = Path(folder).name
    cmd = (
        f"python -m decoding.train.as_arm --data {c['data']} --name {c['name']} --minutes {c['minutes']} "
        f"--seq-len {c['seq_len']} --batch {c['batch']} --dim {c['dim']} --layers {c['layers']} --heads {c['heads']} "
        f"--lr {c['lr']} --l2r-fraction {c['l2r_fraction']} --seed {c['seed']} --device cuda"
    )
    text = f"""# {name}

An any-subset autoregressive model (AS-ARM; arXiv 2205.13554, 2504.20456): one two-stream pass gives
`p(x_i | revealed)` for any target and the exact chain `p(x_sigma(j) | visible, x_sigma(<j))` along any
order, so it infills any mask pattern and serves any-subset speculative decoding (ASSD).

- Network: `decoding.nn.any_subset.AnySubsetTransformer` (pre-norm transformer, RMSNorm, rotary
  positions, SwiGLU; XLNet-style content and query streams via attention masks), dim {c['dim']},
  {c['layers']} layers, {c['heads']} heads, context {c['seq_len']} tokens, {s['params']:,} parameters; weights
  stored as {c['save_dtype']} (`model.safetensors`, loaded as float32).
- Data: {m.get('corpus', '?')} corpus train split ({m.get('train_tokens', '?')} tokens; {m.get('source', '')}),
  token file `{c['data']}`; validation on the held-out split ({m.get('valid_tokens', '?')} tokens).
- Tokenizer: `tokenizer.model` (SentencePiece BPE, {m.get('vocab_size', '?')} pieces, sha256
  `{m.get('tokenizer_sha256', '?')}`); id 2 ends a document; ids 0, 1, 3 are never predicted.
- Objective: random visible set (masking rate ~ U(0, 1)), the rest ordered uniformly at random or, with
  probability {c['l2r_fraction']}, left to right; mean chain cross-entropy.
- Training: {s['steps']} steps of {c['batch']} x {c['seq_len']} tokens ({s['tokens_seen']:,} tokens) in {s['seconds']} s on
  {s['device']} (torch {s['torch']}), AdamW lr {c['lr']} (warmup {c['warmup']}, cosine to {c['min_lr_ratio']}x over the
  time budget), bf16 autocast on CUDA, seed {c['seed']}.
- Result: best validation chain cross-entropy {s['best_valid_loss']:.4f} nats/token at step {s['best_step']}
  (kept weights); curves in `loss.png`, numbers in `log.json`.

Retrain:

```
{cmd}
```

Use:

```python
from decoding.text_assd_api import assd_infill
out = assd_infill("models/{name}", "The ____ of the ____ was ____ .", k=4, seed=0)
print(out["texts"][0], out["nfe"])
```
"""
    path = Path(folder) / "README.md"
    path.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="python -m decoding.train.as_arm", description="Train an any-subset AR model (AS-ARM).")
    ap.add_argument("--data", default=d.data, help="token file from python -m decoding.data.text_corpus")
    ap.add_argument("--name", default=d.name, help="model folder models/as-arm-<name>")
    ap.add_argument("--out", default=None, help="output folder (overrides --name)")
    ap.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=d.max_steps)
    ap.add_argument("--seq-len", type=int, default=d.seq_len)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--dim", type=int, default=d.dim)
    ap.add_argument("--layers", type=int, default=d.layers)
    ap.add_argument("--heads", type=int, default=d.heads)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--warmup", type=int, default=d.warmup)
    ap.add_argument("--l2r-fraction", type=float, default=d.l2r_fraction)
    ap.add_argument("--eval-every", type=int, default=d.eval_every)
    ap.add_argument("--eval-windows", type=int, default=d.eval_windows)
    ap.add_argument("--device", default=d.device, help="cuda, cpu or auto")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--save-dtype", default=d.save_dtype, choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--plot-only", default=None, metavar="FOLDER", help="only (re)write loss.png of a trained model")
    a = ap.parse_args(argv)
    if a.plot_only:
        plot_loss(Path(a.plot_only))
        return 0
    cfg = TrainConfig(
        data=a.data, out=a.out, name=a.name, minutes=a.minutes, max_steps=a.max_steps, seq_len=a.seq_len, batch=a.batch,
        dim=a.dim, layers=a.layers, heads=a.heads, lr=a.lr, warmup=a.warmup, l2r_fraction=a.l2r_fraction,
        eval_every=a.eval_every, eval_windows=a.eval_windows, device=a.device, seed=a.seed, save_dtype=a.save_dtype,
        threads=a.threads, progress=not a.no_progress,
    )
    log = train(cfg)
    print(json.dumps(log["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
