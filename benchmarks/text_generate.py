"""Autoregressive sampling speed: our engine against Hugging Face ``generate()``, same model, processors, batch.

    # GPU (H100): SmolLM2-135M architecture, random bf16 weights, 32-token prompts, 256 new tokens
    python benchmarks/text_generate.py --device cuda --random-weights --batch 1 --out gpu_b1.json
    python benchmarks/text_generate.py --device cuda --random-weights --batch 64 --out gpu_b64.json
    # CPU: the real SmolLM2-135M in float32
    python benchmarks/text_generate.py --device cpu --model smollm2 --batch 1 8 --new-tokens 64 --out cpu.json
    # tiny smoke run (what the test runs)
    python benchmarks/text_generate.py --device cpu --random-weights --tiny --batch 2 --new-tokens 8 --reps 1

Ours:
    ``loop``       the decode loop (:func:`decoding.decode`, what ``decoding.generate`` runs) with the
                   static-cache model (its one-token step compiled + CUDA graph on GPU); the host looks at
                   the GPU every 8 steps. Suffixes: ``-sdpa``/``-xformers``/``-naive``/``-triton``/``-flex`` (attention
                   backend; ``-triton``: our split-K decode kernel, :mod:`decoding.nn.decode_attention`;
                   ``-flex``: FlexAttention's decode kernel, :mod:`decoding.nn.flex_decode`),
                   ``-fused`` (``-triton`` plus the fused five-kernel layer of batches <= 8,
                   :mod:`decoding.nn.fused_decode`; ``loop-fused`` is ``loop-triton`` with it), ``-fused6``
                   (the same with the attention chunks' combine as its own kernel: six a layer),
                   ``-pdl`` (with ``-fused``: its kernels with programmatic dependent launch, Hopper+;
                   uncompiled, as ``StaticCausalLM(pdl=True)`` runs it: compare with ``loop-fused-eager``),
                   ``-eager`` (no torch.compile), ``-nograph`` (no CUDA graph), ``-sync1`` (the host looks
                   every step), ``-auto`` (``StaticCausalLM(fused="auto")``, what ``decoding.load`` builds:
                   on a Hopper GPU the fused step with PDL for the batches with measured launches, the
                   compiled unfused step with the default attention for the others; plain ``loop`` is
                   always unfused), e.g. ``loop-sdpa-eager``, ``loop-auto``;
    ``hf-adapter`` the decode loop driving the transformers model.
Peer (only when transformers imports):
    ``hf``         ``model.generate()`` with its default dynamic cache;
    ``hf-static``  ``generate(cache_implementation="static")`` (transformers compiles it on GPU).

Every engine samples with the same processors (each ``--configs`` entry; transformers' default
top-k 50 is switched off) and ignores EOS, so all do the same work: ``batch x new_tokens`` tokens.
Each engine runs once per batch and config to warm up (compilation, graph capture), then
``--reps`` times, engine after engine; each engine's row is printed and ``--out`` rewritten
(atomically) as soon as it finishes, so a run stopped from outside keeps every finished row.
``--engine-timeout S`` caps each engine's warm-up plus repetitions at ``S`` seconds (per batch and
config): an engine over it keeps the repetitions it finished (``capped``) or, stopped in its
warm-up, is reported as failed. The table shows the median tokens/s and the ratio
to the best transformers engine of the same batch and config. On CPU it also shows tokens per
CPU-second of this process (``time.process_time``): on a shared machine wall time swings with
the other jobs' load, while CPU time measures the work each engine does (equal to wall time on
an idle machine with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import decoding.processors.graphed as graphed  # noqa: E402
from decoding.adapters.hf import parse_dtype  # noqa: E402
from decoding.adapters.llama import SMOLLM2_135M, native_to_hf_state  # noqa: E402
from decoding.adapters.static_cache import StaticCausalLM  # noqa: E402
from decoding.core.fallback import error_tail  # noqa: E402
from decoding.core.loop import decode  # noqa: E402
from decoding.io import atomic_write_json  # noqa: E402
from decoding.nn.transformer import Transformer, TransformerConfig  # noqa: E402
from decoding.processes.autoregressive import Autoregressive  # noqa: E402
from decoding.processors import TopP, standard_processors  # noqa: E402

TINY = dict(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden=128, rope_theta=10000.0,
            tie_embeddings=True, norm_eps=1e-5)
HF_NAMES = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
            "typical": "typical_p", "repetition_penalty": "repetition_penalty"}


def have_transformers() -> bool:
    try:
        import transformers  # noqa: F401
    except Exception:
        return False
    return True


def parse_config(text: str) -> dict[str, float]:
    """``"temperature=0.8,top_p=0.95"`` -> kwargs of :func:`standard_processors`."""
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in HF_NAMES:
            raise SystemExit(f"unknown processor {key!r} in --configs; use {', '.join(HF_NAMES)}")
        out[key] = int(value) if key == "top_k" else float(value)
    return out


def build_models(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """Our transformer and (if transformers imports) the same weights as a transformers Llama."""
    hf = None
    if args.random_weights:
        sizes = TINY if args.tiny else SMOLLM2_135M
        torch.manual_seed(0)
        net = Transformer(TransformerConfig(**sizes, max_len=args.prompt_len + args.new_tokens + 64)).eval()
        if have_transformers() and not args.skip_hf:
            from transformers import LlamaConfig, LlamaForCausalLM

            c = net.cfg
            cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden,
                              num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
                              num_key_value_heads=c.n_kv_heads, max_position_embeddings=c.max_len,
                              rope_theta=c.rope_theta, rms_norm_eps=c.norm_eps, tie_word_embeddings=c.tie_embeddings)
            hf = LlamaForCausalLM(cfg)
            hf.load_state_dict(native_to_hf_state(net), strict=True)
        net = net.to(device=device, dtype=dtype)
    else:
        from decoding.adapters.hf import resolve_source
        from decoding.adapters.llama import load_native_llama

        folder, _ = resolve_source(args.model)
        net = load_native_llama(folder, device=device, dtype=dtype)
        if have_transformers() and not args.skip_hf:
            from transformers import AutoModelForCausalLM

            hf = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if hf is not None:
        hf = hf.to(device=device, dtype=dtype).eval()
        hf.generation_config.eos_token_id = None
    return net, hf


def ours(args: argparse.Namespace, net: Transformer) -> dict[str, tuple[int | None, StaticCausalLM]]:
    """engine name -> (sync_every, model); one model per engine, reused across batches and configs."""
    backend = None if args.attention == "auto" else args.attention
    flag = {"auto": None, "on": True, "off": False}
    out = {}
    for name in args.engines:
        base, _, variant = name.partition("-")
        if base != "loop":
            continue
        opts = dict(backend=backend, compile=flag[args.compile], cuda_graphs=flag[args.cuda_graphs],
                    compile_mode=args.compile_mode)
        sync_every = None
        for v in filter(None, variant.split("-")):
            if v == "sync1":
                sync_every = 1
            elif v in ("sdpa", "xformers", "naive", "triton", "flex"):
                opts["backend"] = v
            elif v in ("fused", "fused6"):
                opts["backend"] = "triton"
                opts["fused"] = True
                opts["fused_combine"] = v == "fused"
            elif v == "auto":  # what decoding.load builds: fused (with PDL) where measured launches exist
                opts["fused"] = "auto"
            elif v == "pdl":
                opts["pdl"] = True
                opts["compile"] = False  # inductor drops a user kernel's launch_pdl (see StaticCausalLM)
            elif v == "eager":
                opts["compile"] = False
            elif v == "nograph":
                opts["cuda_graphs"] = False
            else:
                raise SystemExit(f"unknown engine {name!r} (suffixes: -auto, -sdpa, -xformers, -naive, -triton, -flex, -fused, -fused6, "
                                 "-pdl, -eager, -nograph, -sync1)")
        out[name] = (sync_every, StaticCausalLM(net, capacity=args.prompt_len + args.new_tokens + 1, **opts))
    return out


def our_processors(config: dict, top_p_method: str = "auto") -> list:
    """Our engines' processors for ``config``; ``top_p_method`` is :class:`~decoding.processors.TopP`'s
    ``method`` (``"kernel"``: the Triton cut of :mod:`decoding.processors.cut_kernel`)."""
    return [replace(p, method=top_p_method) if isinstance(p, TopP) else p for p in standard_processors(**config)]


def runners(args, models, hf, prompt: torch.Tensor, config: dict) -> dict[str, Callable[[int], int]]:
    """engine name -> run(seed) returning the number of generated tokens."""
    n = args.new_tokens
    procs = our_processors(config, args.top_p_method)
    out: dict[str, Callable[[int], int]] = {}
    for name, (sync_every, lm) in models.items():

        def run(seed: int, lm=lm, sync_every=sync_every) -> int:
            res = decode(lm, Autoregressive(), prompt, steps=n, processors=procs, seed=seed, sync_every=sync_every)
            return int(res.nfe.sum())

        out[name] = run
    if hf is None:
        return {name: out[name] for name in args.engines if name in out}
    if "hf-adapter" in args.engines:
        from decoding.adapters.hf import HFCausalLM

        adapter = HFCausalLM(hf)
        out["hf-adapter"] = lambda seed: int(
            decode(adapter, Autoregressive(), prompt, steps=n, processors=procs, seed=seed).nfe.sum()
        )
    from transformers import GenerationConfig

    kw = dict(do_sample=True, top_k=0, max_new_tokens=n, eos_token_id=None, pad_token_id=0)
    kw.update({HF_NAMES[k]: v for k, v in config.items()})
    for name, extra in (("hf", {}), ("hf-static", {"cache_implementation": "static"})):
        if name in args.engines:
            gc = GenerationConfig(**kw, **extra)

            def run_hf(seed: int, gc=gc) -> int:
                torch.manual_seed(seed)
                with torch.inference_mode():
                    ids = hf.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=gc)
                return int((ids.shape[1] - prompt.shape[1]) * ids.shape[0])

            out[name] = run_hf
    return {name: out[name] for name in args.engines if name in out}  # in the order asked for


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class EngineTimeout(Exception):
    """An engine ran past ``--engine-timeout``."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`EngineTimeout` in this (main) thread after ``seconds`` (no limit: None or 0)."""
    if not seconds or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame) -> None:
        raise EngineTimeout(f"over the {seconds:g} s cap")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def measure_one(fn: Callable[[int], int], reps: int, device: torch.device, cap: float | None) -> dict:
    """Warm up ``fn`` once (compilation, graph capture), then time ``reps`` runs; at most ``cap`` seconds."""
    row: dict = {"warmup_s": None, "tok_s": [], "tok_per_cpu_s": [], "error": None, "capped": False}
    start = time.perf_counter()
    try:
        with time_limit(cap):
            fn(0)
            sync(device)
            row["warmup_s"] = time.perf_counter() - start
            for r in range(reps):
                sync(device)
                t, c = time.perf_counter(), time.process_time()
                tokens = fn(r + 1)
                sync(device)
                row["tok_s"].append(tokens / (time.perf_counter() - t))
                row["tok_per_cpu_s"].append(tokens / max(time.process_time() - c, 1e-9))
    except EngineTimeout as e:
        row["capped"] = True
        if not row["tok_s"]:
            row["error"] = f"EngineTimeout: {e}" + (" (in the warm-up)" if row["warmup_s"] is None else "")
    except Exception as e:  # report and go on with the other engines
        row["error"] = error_tail(e)
    with contextlib.suppress(Exception):
        sync(device)  # let an interrupted engine's queued work finish before the next one starts
    row["seconds"] = time.perf_counter() - start
    row["median_tok_s"] = statistics.median(row["tok_s"]) if row["tok_s"] else None
    row["median_tok_per_cpu_s"] = statistics.median(row["tok_per_cpu_s"]) if row["tok_per_cpu_s"] else None
    return row


def add_ratios(rows: dict[str, dict]) -> None:
    """Ratios to the best transformers engine among the rows so far."""
    best = max((r["median_tok_s"] or 0 for k, r in rows.items() if k in ("hf", "hf-static")), default=0) or None
    best_cpu = max((r["median_tok_per_cpu_s"] or 0 for k, r in rows.items() if k in ("hf", "hf-static")), default=0)
    for row in rows.values():
        row["ratio_to_hf_best"] = row["median_tok_s"] / best if (best and row["median_tok_s"]) else None
        row["cpu_ratio_to_hf_best"] = (row["median_tok_per_cpu_s"] / best_cpu
                                       if (best_cpu and row["median_tok_per_cpu_s"]) else None)


def measure(fns: dict[str, Callable[[int], int]], reps: int, device: torch.device, cap: float | None = None,
            on_row: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Each engine in turn (warm-up, then ``reps`` timed runs); ``on_row(name, row)`` after each one."""
    rows: dict[str, dict] = {}
    for name, fn in fns.items():
        rows[name] = measure_one(fn, reps, device, cap)
        if rows[name]["error"]:
            print(f"  {name}: failed: {rows[name]['error']}", file=sys.stderr)
        add_ratios(rows)
        if on_row is not None:
            on_row(name, rows[name])
    return rows


def profile_loop(lm: StaticCausalLM, device: torch.device, prompt: torch.Tensor, config: dict, n: int,
                 top_p_method: str = "auto") -> dict:
    """Device kernels and time per generated token of the decode loop (torch.profiler)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    procs = our_processors(config, top_p_method)
    decode(lm, Autoregressive(), prompt, steps=n, processors=procs, seed=0)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        decode(lm, Autoregressive(), prompt, steps=n, processors=procs, seed=1)
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    events = sorted(averages, key=lambda e: -getattr(e, key, 0))
    kernels = [e for e in averages if e.device_type == DeviceType.CUDA]
    return {
        "top": [{"name": e.key[:100], "count": e.count, "ms": getattr(e, key, 0) / 1e3} for e in events[:30]],
        "device_kernels_per_token_step": sum(e.count for e in kernels) / n,
        "device_ms_per_token_step": sum(getattr(e, key, 0) for e in kernels) / 1e3 / n,
        "table": averages.table(sort_by=key, row_limit=30),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--model", default="smollm2", help="a Llama folder or 'smollm2' (ignored with --random-weights)")
    p.add_argument("--random-weights", action="store_true", help="SmolLM2-135M architecture with random weights")
    p.add_argument("--tiny", action="store_true", help="with --random-weights: a 2-layer toy (smoke test)")
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=["temperature=0.8,top_p=0.95"],
                   help="processor settings, one run each, e.g. 'temperature=0.8,top_p=0.95' 'typical=0.9' "
                        "'temperature=1.0' (keys: " + ", ".join(HF_NAMES) + ")")
    p.add_argument("--engines", default=None, help="comma list (see above), run in this order; default: "
                   "loop,loop-sync1,hf,hf-static on CUDA, loop,hf-adapter,hf on CPU")
    p.add_argument("--attention", default="auto", help="attention backend of our engines: auto, xformers, sdpa, naive")
    p.add_argument("--top-p-method", default="auto", choices=["auto", "sort", "search", "kernel"],
                   help="TopP's method in our engines (kernel: the Triton cut, needs triton and CUDA)")
    p.add_argument("--processors-graph", default="on", choices=["on", "off"],
                   help="on CUDA, replay our engines' state-free processor chain as one CUDA graph "
                        "(decoding.processors.graphed; off: eager ops, for comparison)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--compile-mode", default=None, help="torch.compile mode of our step, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--inductor-pdl", default="auto", choices=["auto", "on", "off"],
                   help="programmatic dependent launch of inductor's own kernels in our compiled steps "
                        "(torch._inductor.config.triton.enable_pdl; auto: torch's setting, TORCHINDUCTOR_ENABLE_PDL)")
    p.add_argument("--cuda-graphs", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--profile", action="store_true", help="also profile one run of the first loop engine")
    p.add_argument("--engine-timeout", type=float, default=None,
                   help="seconds per engine (warm-up + reps) for each batch and config; over it, the "
                        "repetitions done so far are kept")
    p.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after every engine)")
    args = p.parse_args(argv)
    graphed.ENABLED = args.processors_graph == "on"  # process-wide: this benchmark's only decode() calls are ours
    inductor_pdl = set_inductor_pdl(args.inductor_pdl)
    device = torch.device(args.device)
    default = "loop,loop-sync1,hf,hf-static" if device.type == "cuda" else "loop,hf-adapter,hf"
    args.engines = list(dict.fromkeys((args.engines or default).split(",")))  # run in this order
    configs = [parse_config(c) for c in args.configs]
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = parse_dtype(args.dtype, device)
    net, hf = build_models(args, device, dtype)
    models = ours(args, net)
    meta = {
        "date": time.strftime("%Y-%m-%d"), "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__, "transformers": _tf_version(),
        "model": ("tiny random" if args.tiny else "random SmolLM2-135M arch") if args.random_weights else args.model,
        "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "reps": args.reps,
        "attention": args.attention, "compile": args.compile, "compile_mode": args.compile_mode,
        "cuda_graphs": args.cuda_graphs, "engine_timeout": args.engine_timeout,
        "fused_configs": os.environ.get("DECODING_FUSED_CONFIGS"), "top_p_method": args.top_p_method,
        "processors_graph": args.processors_graph,  # the fused engines' launch table, if not shipped
        "inductor_pdl": inductor_pdl,
        "command": "python " + " ".join(sys.argv),
    }
    results: dict = {"meta": meta, "runs": [], "complete": False}

    def save() -> None:
        if args.out:
            atomic_write_json(args.out, results)

    for b in args.batch:
        g = torch.Generator().manual_seed(b)
        prompt = torch.randint(3, net.cfg.vocab_size, (b, args.prompt_len), generator=g).to(device)
        for ci, config in enumerate(configs):
            fns = runners(args, models, hf, prompt, config)
            print(f"batch {b}, {args.configs[ci]}: {', '.join(fns)} ...", file=sys.stderr)
            run = {"batch": b, "config": args.configs[ci], "engines": {}}
            results["runs"].append(run)

            def on_row(name: str, row: dict, run=run) -> None:
                if name in models:  # what actually ran (compilation may have fallen back)
                    lm = models[name][1]
                    row.update(compiled=lm.compile, cuda_graphs=lm.cuda_graphs, decode_backend=lm.decode_backend)
                run["engines"][name] = row
                print_row(run, name, row, meta["device"] == "cpu")
                save()

            run["engines"] = measure(fns, args.reps, device, args.engine_timeout, on_row)
            save()
        if args.profile and models:
            try:
                with time_limit(args.engine_timeout):
                    prof = profile_loop(next(iter(models.values()))[1], device, prompt, configs[0], args.new_tokens,
                                        args.top_p_method)
            except Exception as e:  # the profile is extra: keep the timings
                prof = {"error": error_tail(e)}
                print(f"profile failed: {prof['error']}", file=sys.stderr)
            else:
                first = next(iter(models))
                tok_s = results["runs"][-1]["engines"].get(first, {}).get("median_tok_s")
                busy = tok_s and device.type == "cuda"  # (on the CPU no kernel is a device kernel)
                if tok_s:  # the unprofiled wall time of a step of the same engine: is the device kept busy?
                    prof["wall_ms_per_token_step"] = 1e3 * b / tok_s
                if busy:
                    prof["device_busy_fraction"] = prof["device_ms_per_token_step"] / prof["wall_ms_per_token_step"]
                print(prof["table"])
                print(f"device kernels per token step: {prof['device_kernels_per_token_step']:.1f}, "
                      f"device ms per token step: {prof['device_ms_per_token_step']:.3f}"
                      + (f", wall ms per token step ({first}, unprofiled): {prof['wall_ms_per_token_step']:.3f}"
                         if tok_s else "") + (f", device busy {prof['device_busy_fraction']:.0%}" if busy else ""))
            results.setdefault("profile", {})[str(b)] = prof
            save()
    print_table(results)
    results["meta"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["complete"] = True
    save()
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return results


def set_inductor_pdl(choice: str) -> bool | None:
    """Set ``torch._inductor.config.triton.enable_pdl`` (``"on"``/``"off"``; ``"auto"`` leaves it) and
    return its value, None where this torch has no such setting (``"on"`` there is an error)."""
    import torch._inductor.config as inductor_config

    triton_cfg = getattr(inductor_config, "triton", None)
    if triton_cfg is None or not hasattr(triton_cfg, "enable_pdl"):
        if choice == "on":
            raise SystemExit(f"--inductor-pdl on: torch {torch.__version__} has no inductor enable_pdl setting")
        return None
    if choice != "auto":
        triton_cfg.enable_pdl = choice == "on"
    return bool(triton_cfg.enable_pdl)


def _tf_version() -> str | None:
    try:
        import transformers

        return transformers.__version__
    except Exception:
        return None


def row_line(run: dict, name: str, r: dict, cpu: bool, gpu_run: bool = True) -> str:
    """One table line for engine ``name`` of ``run``."""
    label = name + (" (eager)" if gpu_run and r.get("compiled") is False else "") + (" (capped)" if r.get("capped") else "")
    head = f"{run['batch']:>5}  {run['config'][:28]:<28} {label:<18}"
    if r["error"]:
        return f"{head} failed: {r['error'][-160:]}"
    ratio = f"{r['ratio_to_hf_best']:.2f}" if r["ratio_to_hf_best"] else "-"
    tail = ""
    if cpu:
        cr = f"{r['cpu_ratio_to_hf_best']:.2f}" if r["cpu_ratio_to_hf_best"] else "-"
        tail = f" {r['median_tok_per_cpu_s']:>10.1f} {cr:>6}"
    return f"{head} {r['median_tok_s']:>15.1f} {ratio:>10} {r['warmup_s']:>10.1f}{tail}"


def print_row(run: dict, name: str, r: dict, cpu: bool) -> None:
    """Print one engine's line as soon as it finishes (ratio: to the transformers rows so far)."""
    print(row_line(run, name, r, cpu, not cpu), flush=True)


def print_table(results: dict) -> None:
    m = results["meta"]
    print(f"\n{m['model']} | {m['device']} {m['gpu'] or m['cpu']} | {m['dtype']} | prompt {m['prompt_len']} | "
          f"new {m['new_tokens']} | torch {m['torch']} | transformers {m['transformers']}")
    cpu = m["device"] == "cpu"
    extra = f" {'tok/CPU-s':>10} {'x HF':>6}" if cpu else ""
    print(f"{'batch':>5}  {'processors':<28} {'engine':<18} {'tok/s (median)':>15} {'x HF best':>10} {'warm-up s':>10}{extra}")
    for run in results["runs"]:
        for name, r in run["engines"].items():
            print(row_line(run, name, r, cpu, m["device"] != "cpu"))


if __name__ == "__main__":
    main()
