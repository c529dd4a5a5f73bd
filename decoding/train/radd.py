"""Train a RADD text model (absorbing discrete diffusion without time input) on a pre-tokenized corpus.

Objective: RADD's lambda-DCE / t-DCE (Ou et al., arXiv:2406.03736, sec. 3.3; the same as MDLM's
continuous-time ELBO, arXiv:2406.07524) for the log-linear schedule. Per window ``x0`` of ``L``
tokens draw ``t`` (stratified over the batch, ``t in [eps, 1]``), mask each position with
probability ``t`` and score the clean tokens at the masked positions::

    loss = E_t [ (1 / t) * sum_{i masked} -log p_theta(x0^i | x_t) ] / L

an upper bound on the negative log-likelihood per token (nats); ``exp(loss)`` bounds perplexity.
The network (:class:`decoding.nn.radd.RADDNet`) never sees ``t``.

Torch only on the GPU machine (data from ``python -m decoding.data.text_corpus``, weights written
by :mod:`decoding.data.safetensors_lite`). Writes ``models/radd-<name>/``: ``config.json``,
``model.safetensors`` (float16, the EMA or raw weights with the best validation loss), ``tokenizer.model``,
``log.json``, ``loss.png`` (needs matplotlib; else ``--plot-only`` later) and ``README.md``.

GPU (one H100, about 7 minutes)::

    python -m decoding.train.radd --data data/brown-sp4k-tokens.safetensors --name brown --minutes 7 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from decoding.data.text_corpus import fixed_windows, load_token_file, random_windows
from decoding.nn.radd import RADDNet, save_radd

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class TrainConfig:
    """Options of :func:`train` (the CLI flags; see ``--help``)."""

    data: str = "data/brown-sp4k-tokens.safetensors"
    out: str | None = None
    name: str = "brown"
    minutes: float = 7.0
    max_steps: int = 1_000_000
    seq_len: int = 128
    batch: int = 256
    dim: int = 256
    layers: int = 8
    heads: int = 4
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 300
    weight_decay: float = 0.0
    ema: float = 0.999
    eps: float = 1e-3
    eval_every: int = 500
    eval_windows: int = 512
    eval_repeats: int = 4
    device: str = "auto"
    seed: int = 0
    save_dtype: str = "float16"
    compile: bool = False
    threads: int | None = None
    progress: bool = True


def stratified_times(batch: int, eps: float, generator: torch.Generator) -> Tensor:
    """``(batch,)`` times in ``[eps, 1)``: one uniform shift of an evenly spaced grid (low-variance sampling, MDLM)."""
    u = torch.rand((), generator=generator, device=generator.device)
    grid = (u + torch.arange(batch, device=generator.device) / batch) % 1.0
    return eps + (1.0 - eps) * grid


def dce_loss(
    log_probs: Callable[[Tensor], Tensor], x0: Tensor, mask_id: int, t: Tensor, generator: torch.Generator
) -> Tensor:
    """RADD's denoising cross-entropy for the log-linear schedule, per token (nats), averaged over the batch.

    Args:
        log_probs: ``tokens (B, L) -> (B, L, V)`` log-probabilities of clean tokens (the network).
        x0: ``(B, L)`` clean tokens.
        mask_id: the mask id fed to the network.
        t: ``(B,)`` times (masking probabilities) in ``(0, 1]``.
        generator: draws the masks.
    """
    masked = torch.rand(x0.shape, generator=generator, device=generator.device).to(x0.device) < t[:, None].to(x0.device)
    xt = torch.where(masked, torch.full_like(x0, mask_id), x0)
    lp = log_probs(xt)
    ce = -lp.gather(-1, x0[..., None]).squeeze(-1).float()  # (B, L)
    per_row = (ce * masked).sum(-1) / t.to(ce.device).float()
    return per_row.mean() / x0.shape[1]


def _lr(cfg: TrainConfig, step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return cfg.lr * warm * cos


@torch.no_grad()
def evaluate(net: RADDNet, windows: Tensor, cfg: TrainConfig, autocast: bool) -> float:
    """The DCE bound (nats/token) on fixed windows with fixed times and masks (same every call)."""
    was = net.training
    net.eval()
    g = torch.Generator(device=windows.device).manual_seed(cfg.seed + 1)
    total, n = 0.0, 0
    for _ in range(cfg.eval_repeats):
        for i in range(0, windows.shape[0], cfg.batch):
            w = windows[i : i + cfg.batch]
            t = stratified_times(w.shape[0], cfg.eps, g)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = dce_loss(net, w, net.mask_id, t, g)
            total += float(loss) * w.shape[0]
            n += w.shape[0]
    net.train(was)
    return total / max(n, 1)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, keep the (EMA or raw) weights with the best validation loss, write the model folder; returns the log."""
    if cfg.minutes <= 0 or cfg.max_steps < 1:
        raise ValueError(f"minutes must be > 0 and max_steps >= 1, got {cfg.minutes} and {cfg.max_steps}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"ema must lie in [0, 1), got {cfg.ema}")
    if not 0.0 < cfg.eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {cfg.eps}")
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
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    streams, meta = load_token_file(cfg.data)
    vocab = int(meta["vocab_size"])
    train_stream = streams["train"].to(dev)
    valid = fixed_windows(streams["valid"], cfg.seq_len)[: cfg.eval_windows].to(dev)
    net = RADDNet(vocab, dim=cfg.dim, n_layers=cfg.layers, n_heads=cfg.heads, max_len=cfg.seq_len).to(dev).train()
    n_params = sum(p.numel() for p in net.parameters())
    nbytes = n_params * torch.empty((), dtype=getattr(torch, cfg.save_dtype)).element_size()
    if nbytes > MAX_FILE_BYTES:
        print(f"warning: {n_params:,} parameters in {cfg.save_dtype} make a {nbytes / 2**20:.1f} MiB file (> 16 MiB)", file=sys.stderr)
    ema = RADDNet(vocab, dim=cfg.dim, n_layers=cfg.layers, n_heads=cfg.heads, max_len=cfg.seq_len).to(dev).eval()
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), fused=dev.type == "cuda",
    )
    step_fn = torch.compile(net) if cfg.compile else net
    autocast = dev.type == "cuda"
    g = torch.Generator(device=dev).manual_seed(cfg.seed)
    budget = cfg.minutes * 60.0
    log: dict[str, Any] = {"train": [], "valid": []}
    best: tuple[float, dict[str, Tensor] | None, int, str] = (math.inf, None, 0, "ema")
    start = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, desc="radd", disable=not cfg.progress, mininterval=2.0)
    step, tokens_seen = 0, 0
    best = _eval_and_keep(cfg, net, ema, valid, autocast, step, start, log, best)
    ema_p, net_p = list(ema.parameters()), list(net.parameters())
    while step < cfg.max_steps:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
        lr = _lr(cfg, step, max(step / cfg.max_steps, elapsed / budget))
        for group in opt.param_groups:
            group["lr"] = lr
        x0 = random_windows(train_stream, cfg.seq_len, cfg.batch, g)
        t = stratified_times(cfg.batch, cfg.eps, g)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = dce_loss(step_fn, x0, net.mask_id, t, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))  # EMA warm-up, so early weights do not linger
            torch._foreach_lerp_(ema_p, net_p, 1.0 - d)
        step += 1
        tokens_seen += x0.numel()
        if step % 25 == 0 or step == 1:  # syncs with the GPU only here
            value = float(loss.detach())
            log["train"].append({"step": step, "loss": value, "lr": lr, "seconds": round(time.perf_counter() - start, 2)})
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}")
        if step % cfg.eval_every == 0:
            best = _eval_and_keep(cfg, net, ema, valid, autocast, step, start, log, best)
        bar.update(1)
    bar.close()
    if not log["valid"] or log["valid"][-1]["step"] != step:
        best = _eval_and_keep(cfg, net, ema, valid, autocast, step, start, log, best)
    seconds = time.perf_counter() - start
    if best[1] is not None:
        ema.load_state_dict(best[1])
    out = Path(cfg.out) if cfg.out else REPO_ROOT / "models" / f"radd-{cfg.name}"
    summary = {
        "steps": step,
        "tokens_seen": tokens_seen,
        "epochs": round(tokens_seen / max(train_stream.numel(), 1), 2),
        "seconds": round(seconds, 1),
        "best_valid_loss": best[0],
        "best_valid_ppl_bound": math.exp(best[0]) if best[0] < 50 else None,
        "best_step": best[2],
        "best_weights": best[3],
        "params": n_params,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
    }
    log.update({"config": asdict(cfg), "data_meta": meta, "summary": summary})
    _write_folder(cfg, ema.cpu(), out, meta, log)
    return log


def _eval_and_keep(cfg, net, ema, valid, autocast, step, start, log, best):  # noqa: ANN001, ANN202
    """Evaluate the EMA and the raw weights; keep the better of the two if it beats the best so far."""
    val_ema = evaluate(ema, valid, cfg, autocast)
    val_raw = evaluate(net, valid, cfg, autocast)
    log["valid"].append({"step": step, "loss": min(val_ema, val_raw), "loss_ema": val_ema, "loss_raw": val_raw,
                         "seconds": round(time.perf_counter() - start, 2)})
    val, src, kind = (val_ema, ema, "ema") if val_ema <= val_raw else (val_raw, net, "raw")
    if val < best[0]:
        return (val, {k: v.detach().to("cpu", copy=True) for k, v in src.state_dict().items()}, step, kind)
    return best


def _write_folder(cfg: TrainConfig, net: RADDNet, out: Path, meta: dict[str, str], log: dict[str, Any]) -> None:
    extra = {
        "seq_len": cfg.seq_len,
        "eot_id": int(meta.get("eot_id", 2)),
        "banned_tokens": [0, 1, 3],  # <unk>, <s>, <pad>: never in the training windows
        "noise": "loglinear",
        "tokenizer": "tokenizer.model",
        "tokenizer_sha256": meta.get("tokenizer_sha256"),
        "corpus": meta.get("corpus"),
    }
    save_radd(net, out, extra=extra, dtype=getattr(torch, cfg.save_dtype))
    tok = meta.get("tokenizer")
    if tok:
        src = Path(tok) if Path(tok).is_absolute() else REPO_ROOT / tok
        if src.is_file():
            shutil.copyfile(src, out / "tokenizer.model")
    (out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    plot_loss(out)
    write_card(out, log)


def plot_loss(folder: str | Path) -> Path | None:
    """Write ``loss.png`` from ``log.json`` (skipped with a note when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: run `python -m decoding.train.radd --plot-only {folder}` later", file=sys.stderr)
        return None
    log = json.loads((Path(folder) / "log.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    tr, va = log["train"], log["valid"]
    ax.plot([r["step"] for r in tr], [r["loss"] for r in tr], lw=0.8, label="train (one batch)")
    ax.plot([r["step"] for r in va], [r.get("loss_ema", r["loss"]) for r in va], "o-", ms=3, label="valid (EMA weights)")
    if any("loss_raw" in r for r in va):
        ax.plot([r["step"] for r in va], [r["loss_raw"] for r in va], "^-", ms=3, label="valid (raw weights)")
    ax.set_xlabel("step")
    ax.set_ylabel("DCE bound (nats / token)")
    ax.set_title(f"RADD {Path(folder).name}")
    top = max([r["loss"] for r in va[1:]] + [r["loss"] for r in tr[len(tr) // 10 :]] or [1.0])
    ax.set_ylim(bottom=min(r["loss"] for r in va + tr) * 0.95, top=top * 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(folder) / "loss.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_card(folder: str | Path, log: dict[str, Any]) -> Path:
    """Write the model card ``README.md`` from the training log."""
    c, s, m = log["config"], log["summary"], log.get("data_meta", {})
    name = Path(folder).name
    cmd = (
        f"python -m decoding.train.radd --data {c['data']} --name {c['name']} --minutes {c['minutes']} "
        f"--seq-len {c['seq_len']} --batch {c['batch']} --dim {c['dim']} --layers {c['layers']} --heads {c['heads']} "
        f"--lr {c['lr']} --ema {c['ema']} --seed {c['seed']} --device cuda"
    )
    ppl = s.get("best_valid_ppl_bound")
    text = f"""# {name}

A RADD text model (reparameterized absorbing discrete diffusion, Ou et al. arXiv:2406.03736): a
bidirectional transformer **without time input** that predicts `p(x0^i | unmasked tokens)` at every
masked position; the sampler's output cache is exact because the network ignores time.

- Network: `decoding.nn.radd.RADDNet` over `decoding.nn.transformer.Transformer(causal=False)`
  (pre-norm, RMSNorm, rotary positions, SwiGLU), dim {c['dim']}, {c['layers']} layers, {c['heads']} heads,
  context {c['seq_len']} tokens, {s['params']:,} parameters; input ids `0..{int(m.get('vocab_size', 0)) - 1}` plus the
  mask id {m.get('vocab_size', '?')}; weights stored as {c['save_dtype']} (`model.safetensors`, loaded as float32).
- Data: {m.get('corpus', '?')} corpus train split ({m.get('train_tokens', '?')} tokens; {m.get('source', '')}), random
  {c['seq_len']}-token windows of the document stream (documents end with id {m.get('eot_id', 2)}); validation on the
  held-out split ({m.get('valid_tokens', '?')} tokens, {c['eval_windows']} fixed windows x {c['eval_repeats']} fixed mask draws).
- Tokenizer: `tokenizer.model` (SentencePiece BPE, {m.get('vocab_size', '?')} pieces, sha256
  `{m.get('tokenizer_sha256', '?')}`; same as `models/tokenizer-brown-4k`).
- Objective: RADD's DCE for the log-linear schedule (mask rate t ~ stratified U[{c['eps']}, 1], weight 1/t),
  an upper bound on NLL per token.
- Training: {s['steps']} steps of {c['batch']} x {c['seq_len']} tokens ({s['tokens_seen']:,} tokens, {s['epochs']} epochs)
  in {s['seconds']} s on {s['device']} (torch {s['torch']}), AdamW lr {c['lr']} (warmup {c['warmup']}, cosine to
  {c['min_lr_ratio']}x over the time budget), EMA {c['ema']}, bf16 autocast on CUDA, seed {c['seed']}.
- Result: best validation DCE bound {s['best_valid_loss']:.4f} nats/token (perplexity bound
  {f"{ppl:.1f}" if ppl else "n/a"}) at step {s['best_step']} ({s.get('best_weights', 'ema')} weights kept); curves in `loss.png`,
  numbers in `log.json`.

Retrain (one H100, about {c['minutes']} minutes):

```
python -m decoding.data.text_corpus --corpus {m.get('corpus', 'brown')} --out {c['data']}
{cmd}
```

Use:

```python
from decoding.text_masked_api import generate_masked
out = generate_masked("models/{name}", steps=128, sampler="tweedie", num_samples=2, seed=0)
print(out["texts"][0], out["nfe"])
print(generate_masked("models/{name}", infill="The ____ sat on the mat", steps=32)["texts"][0])
```
"""
    path = Path(folder) / "README.md"
    path.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="python -m decoding.train.radd", description="Train a RADD text model (torch only).")
    ap.add_argument("--data", default=d.data, help="token file from python -m decoding.data.text_corpus")
    ap.add_argument("--name", default=d.name, help="model folder models/radd-<name>")
    ap.add_argument("--out", default=None, help="output folder (overrides --name)")
    ap.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock budget (LR schedule follows it)")
    ap.add_argument("--max-steps", type=int, default=d.max_steps)
    ap.add_argument("--seq-len", type=int, default=d.seq_len)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--dim", type=int, default=d.dim)
    ap.add_argument("--layers", type=int, default=d.layers)
    ap.add_argument("--heads", type=int, default=d.heads)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--warmup", type=int, default=d.warmup)
    ap.add_argument("--weight-decay", type=float, default=d.weight_decay)
    ap.add_argument("--ema", type=float, default=d.ema)
    ap.add_argument("--eps", type=float, default=d.eps, help="smallest mask rate t drawn in training")
    ap.add_argument("--eval-every", type=int, default=d.eval_every)
    ap.add_argument("--eval-windows", type=int, default=d.eval_windows)
    ap.add_argument("--eval-repeats", type=int, default=d.eval_repeats)
    ap.add_argument("--device", default=d.device, help="cuda, cpu or auto")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--save-dtype", default=d.save_dtype, choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--plot-only", default=None, metavar="FOLDER", help="only redraw FOLDER/loss.png from its log.json")
    args = ap.parse_args(argv)
    if args.plot_only:
        plot_loss(args.plot_only)
        return 0
    cfg = TrainConfig(
        data=args.data, out=args.out, name=args.name, minutes=args.minutes, max_steps=args.max_steps,
        seq_len=args.seq_len, batch=args.batch, dim=args.dim, layers=args.layers, heads=args.heads, lr=args.lr,
        warmup=args.warmup, weight_decay=args.weight_decay, ema=args.ema, eps=args.eps, eval_every=args.eval_every,
        eval_windows=args.eval_windows, eval_repeats=args.eval_repeats, device=args.device, seed=args.seed,
        save_dtype=args.save_dtype, compile=args.compile, threads=args.threads, progress=not args.no_progress,
    )
    log = train(cfg)
    s = log["summary"]
    print(f"steps {s['steps']}  best valid DCE {s['best_valid_loss']:.4f} nats/token at step {s['best_step']}  {s['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
