"""``decoding generate MODEL [PROMPT] [options]``: one command for every kind of model, a shell over :func:`decoding.generate`.

    decoding generate smollm2 "Write a haiku about the sea." --typical 0.9 --temperature 0.8
    decoding generate smollm2 "Describe a cat." --json-schema cat.schema.json --n 4 --out cats.jsonl
    decoding generate radd-brown "The ____ sat on the ____ ." --steps 128
    decoding generate as-arm-brown "It was a ________ day." --speculative 4
    decoding generate fashion-large --class 7 --n 64 --guidance cfg:2 --out sneakers.png
    decoding generate fashion-large --inpaint shirt.png --mask mask.png --out filled.png

``decoding text`` and ``decoding image`` are the same command with ``--model`` (default
``smollm2`` and ``fashion-large``). Every option belongs to the kinds listed in its group; one
given to a model of another kind exits with status 2 and one line naming both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from decoding.cli.main import UsageError, common_options
from decoding.control import cli as restoration

DESCRIPTION = "Generate text or images with any model of the zoo (or a model folder / .gguf file) through one decoding loop."


def add_parser(subparsers: Any, name: str = "generate", default_model: str | None = None) -> argparse.ArgumentParser:
    """Register ``decoding generate`` (or an alias with ``--model``, ``default_model``) on the CLI's subparsers."""
    if name == "generate":
        p = subparsers.add_parser(name, help="generate text or images with any model", description=DESCRIPTION)
        p.add_argument("model", metavar="MODEL", help="zoo name (smollm2, radd-brown, as-arm-brown, fashion-large, "
                       "fashion-small), a model folder or a .gguf file")
    else:
        p = subparsers.add_parser(name, help=f"alias of `decoding generate` (--model defaults to {default_model})",
                                  description=DESCRIPTION)
        p.add_argument("--model", default=default_model, help=f"zoo name, folder or .gguf file (default {default_model})")
    p.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt (causal LMs) or an infill template with "
                   "____ blanks (masked and any-subset models)")
    g = p.add_argument_group("all kinds")
    g.add_argument("--prompt", dest="prompts", action="append", help="a prompt (repeat for several)")
    g.add_argument("--prompts-file", type=Path, help="one prompt per line (.txt) or {\"prompt\": ...} per line (.jsonl)")
    g.add_argument("--infill", help="an infill template (same as PROMPT)")
    g.add_argument("--n", type=int, help="samples (per prompt) or images (default 1)")
    g.add_argument("--batch-size", type=int, help="rows decoded together (default: all)")
    g.add_argument("--dtype", help="float32, bfloat16 or float16 (default: the model kind's choice)")
    g.add_argument("--out", type=Path, help="text: a .jsonl file (one line per sample); images: a .png grid (+ .json)")
    g.add_argument("--quiet", action="store_true", help="do not print samples")
    g.add_argument("--sync-every", type=int, help="steps between the host's looks at the GPU (default 8 on CUDA)")
    g = p.add_argument_group("causal LMs (smollm2, transformers folders, .gguf files)")
    g.add_argument("--max-new-tokens", type=int, help="new tokens per sample at most (default 128)")
    g.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeats (CTRL)")
    g.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    g.add_argument("--top-p", type=float, help="nucleus mass in (0, 1]")
    g.add_argument("--min-p", type=float, help="keep tokens with p >= min_p * p_max")
    g.add_argument("--typical", type=float, help="locally typical sampling mass in (0, 1) (arXiv 2202.00666)")
    g.add_argument("--greedy", action="store_true", default=None, help="argmax decoding")
    g.add_argument("--stop", action="append", help="stop string (repeatable); the text is cut before it")
    chat = g.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None, help="wrap prompts in the chat template")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="use prompts as raw text")
    g.add_argument("--grammar", help="a built-in grammar (json, arithmetic, csv, sql_select, binary), a .lark file or lark text")
    g.add_argument("--json-schema", help="a JSON Schema file (or JSON text): samples are valid documents")
    g.add_argument("--aligned", action="store_true", default=None, help="grammar-aligned decoding (ASAp, arXiv 2405.21047)")
    g.add_argument("--trie", type=Path, help="ASAp trie file: loaded if present, saved after sampling")
    g.add_argument("--no-budget-close", dest="budget_close", action="store_false", default=None,
                   help="let grammar samples stop incomplete at --max-new-tokens (default: close them in time)")
    g.add_argument("--engine", choices=["auto", "native", "fused", "hf"],
                   help="native (Llama, fast), fused (native with fused Triton kernels for batches <= 8; CUDA) or hf (any causal LM)")
    g = p.add_argument_group("temperature: causal LMs, masked diffusion and any-subset models")
    g.add_argument("--temperature", type=float, help="> 0; below 1 sharpens")
    g = p.add_argument_group("masked diffusion (radd-brown; RADD, arXiv 2406.03736) and image diffusion")
    g.add_argument("--steps", type=int, help="sampling steps (RADD default 128; images default 10)")
    g.add_argument("--sampler", help="RADD sampler: tweedie, euler, exact_rate or any_order; distilled image students: "
                   "deterministic or stochastic")
    g.add_argument("--noise", help="RADD noise schedule: loglinear, cosine or poly:K")
    g.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                   help="RADD: call the network every step (same samples, more NFE)")
    g.add_argument("--length", type=int, help="RADD unconditional sample length in tokens (default: the context)")
    g.add_argument("--blank-tokens", type=int, help="tokens per blank of a template (default: its underscores)")
    g = p.add_argument_group("any-subset models (as-arm-brown; ASSD, arXiv 2504.20456)")
    g.add_argument("--speculative", "--assd-k", dest="speculative", type=int,
                   help="tokens drafted per model call (default 4; 0 = sequential any-order sampling)")
    g.add_argument("--adaptive", action="store_true", default=None, help="adapt the draft length per row")
    g.add_argument("--order", help="left_to_right or random")
    g = p.add_argument_group("image diffusion (fashion-large, fashion-small)")
    g.add_argument("--class", dest="class_label", type=int, help="class index (default: unconditional)")
    g.add_argument("--solver", help="dpmpp_2m (default), dpmpp_3m, ddim, unipc_bh2, ... ")
    g.add_argument("--spacing", help="time grid: time, logsnr, karras or logsnr_trunc (default: the grid measured best for the solver)")
    g.add_argument("--guidance", action="append", help="a guidance wrapper, repeatable: cfg:SCALE[,rescale=PHI][,interval=LO-HI], "
                   "cfgpp:LAMBDA, pag:SCALE[,layers=A+B], agd:SCALE[,adapters=FOLDER], stitch:SMALL_MODEL:FRACTION "
                   "(interval: in the schedule's time, e.g. 200-800 of 0-999)")
    g.add_argument("--nrow", type=int, help="images per grid row (default: square)")
    restoration.add_arguments(p)
    common_options(p)
    p.set_defaults(func=run, default_out="grid.png" if default_model and "fashion" in default_model else None)
    return p


def check_out(args: argparse.Namespace, images: bool) -> None:
    """Refuse an ``--out`` that cannot be written before any sampling: images need a ``.png`` path (and
    its ``.json`` beside it), and neither may be a folder or lie under a file or a read-only folder."""
    from decoding.api.generation import output_paths

    if images:
        output_paths(args.out or Path(args.default_out or "grid.png"), images=True)
    elif args.out is not None:
        if args.out.suffix.lower() != ".jsonl":
            raise UsageError(f"text is saved as JSON lines: give --out a path ending in .jsonl, got {args.out}")
        output_paths(args.out, images=False)


def read_prompts(args: argparse.Namespace) -> list[str]:
    """Prompts from PROMPT, --prompt, --infill and --prompts-file, in that order."""
    prompts = [p for p in (args.prompt, args.infill) if p is not None] + list(args.prompts or [])
    if args.prompts_file is not None:
        path: Path = args.prompts_file
        if not path.is_file():
            raise UsageError(f"--prompts-file {path} does not exist")
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    prompts.append(str(json.loads(line)["prompt"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise UsageError(f"{path} line {k + 1}: expected a JSON object with a \"prompt\" field") from None
            else:
                prompts.append(line)
        if not any(prompts):
            raise UsageError(f"--prompts-file {path} holds no prompt (every line is blank)")
    return prompts


def options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The keyword arguments of :func:`decoding.generate` that the command line gave (None = not given)."""
    from decoding.api import Sampling

    fields = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p", "min_p", "typical", "repetition_penalty")}
    if args.greedy:
        fields["greedy"] = True
    sampling = Sampling(**fields) if any(v is not None for v in fields.values()) else None
    opts = dict(
        n=args.n if args.n is not None else 1, seed=args.seed, sampling=sampling,
        max_new_tokens=args.max_new_tokens, stop=args.stop, chat=args.chat, grammar=args.grammar,
        json_schema=args.json_schema, aligned=args.aligned, trie=args.trie, budget_close=args.budget_close,
        steps=args.steps, sampler=args.sampler, noise=args.noise, cache=args.cache, length=args.length,
        blank_tokens=args.blank_tokens, speculative=args.speculative, adaptive=args.adaptive, order=args.order,
        class_label=args.class_label, solver=args.solver, spacing=args.spacing, guidance=args.guidance,
        batch_size=args.batch_size, sync_every=args.sync_every,
    )
    return {k: v for k, v in opts.items() if v is not None or k in ("seed",)}


class Streamer:
    """Prints row 0's new text as it is generated, holding back what could start a stop string."""

    def __init__(self, decode: Any, prompt_length: int, stops: list[str]) -> None:
        self.decode, self.p = decode, prompt_length
        self.stops = [s for s in stops if s]
        self.printed = 0

    def __call__(self, i: int, state: Any) -> None:
        from decoding.api.causal_lm import cut_at_stop, held_back

        text, stopped = cut_at_stop(self.decode(state.x[0, self.p :][state.memory["attention_mask"][0, self.p :]].tolist()),
                                    self.stops)
        if not stopped:  # hold back what could still become a stop string or another character
            text = text[: len(text) - held_back(text, self.stops)]
        if len(text) > self.printed:
            sys.stdout.write(text[self.printed :])
            sys.stdout.flush()
            self.printed = len(text)


def run(args: argparse.Namespace) -> int:
    import decoding as dc
    from decoding.api.zoo import resolve
    from decoding.core.loop import NonFiniteLogitsError

    t0 = time.perf_counter()
    source = resolve(args.model)
    images = source.kind in ("image-diffusion", "distilled-diffusion", "image-ar", "image-ar-dd")
    if args.nrow is not None and not images:
        raise dc.OptionError(f"option 'nrow' does not apply to {source.kind} models like {args.model}")
    if args.nrow is not None and args.nrow < 1:
        raise UsageError(f"--nrow (images per grid row) must be >= 1, got {args.nrow}")
    check_out(args, images)
    prompts = read_prompts(args)
    if source.kind == "causal-lm" and not prompts:
        raise UsageError("give a prompt: PROMPT, --prompt TEXT or --prompts-file FILE")
    model = dc.load(args.model, device=args.device, dtype=args.dtype, engine=args.engine)
    if len(prompts) > 1 and source.kind != "causal-lm":
        raise UsageError(f"{source.kind} models take one prompt (a template) per call, got {len(prompts)}")
    load_s = time.perf_counter() - t0
    opts = options(args, source.kind)
    prompt: Any = prompts if source.kind == "causal-lm" else (prompts[0] if prompts else None)
    streamer = None
    if source.kind == "causal-lm" and len(prompts) * opts["n"] == 1 and not args.quiet and not args.aligned:
        p = model.encode(prompts, args.chat)["input_ids"].shape[1]
        streamer = opts["on_step"] = Streamer(model.decode, p, args.stop or [])
    cond = None
    if images:
        opts["progress"] = True
    if source.kind == "image-diffusion":
        try:
            steer, cond = restoration.guidance(args, model.model.net.cfg.image_size)
        except (ValueError, FileNotFoundError) as e:
            raise UsageError(str(e)) from None
        if steer is not None:
            opts["guidance"] = [*(opts.get("guidance") or []), steer]
            opts.setdefault("solver", "ddpm")  # restoration's default sampler (--solver overrides)
    elif restoration.given(args):
        raise dc.OptionError(f"option '{restoration.given(args)[0]}' does not apply to {source.kind} models like {args.model}")
    try:
        out = dc.generate(model, prompt, **opts)
    except NonFiniteLogitsError as e:
        raise UsageError(str(e)) from None
    _report(args, out, streamer, load_s)
    if cond is not None:
        report = restoration.write_report(args, out, cond, args.out or Path(args.default_out or "grid.png"))
        print(f"wrote {report} (observation | result{' | truth' if args.truth else ''})")
    return 0


def _report(args: argparse.Namespace, out: Any, streamer: Streamer | None, load_s: float) -> None:
    if out.images is not None:
        path = args.out or Path(args.default_out or "grid.png")
        png, js = out.save(path, nrow=args.nrow)
        print(f"wrote {png} and {js}: {len(out)} images, {max(out.nfe):g} NFE each, {out.seconds:.2f} s")
        return
    if streamer is not None:
        from decoding.api.causal_lm import cut_at_stop

        rest = out.text[0][streamer.printed :] if streamer.printed <= len(out.text[0]) else ""
        print(cut_at_stop(rest, args.stop or [])[0])
    elif not args.quiet:
        for i, row in enumerate(out.rows()):
            closed = ", closed near the token budget" if row.get("budget_limited") else ""
            print(f"=== sample {i} (prompt {row.get('prompt_index', 0)}, {row['finish_reason']}, NFE {row['nfe']:g}{closed}) ===")
            print(row["text"])
    if args.out is not None:
        out.save(args.out)
    tokens = sum(len(t) for t in out.tokens) if out.kind == "causal-lm" else None
    rate = f", {tokens / max(out.seconds, 1e-9):.1f} tok/s" if tokens is not None else ""
    print(f"[{len(out)} samples of {out.model} ({out.kind}) in {out.seconds:.2f} s{rate}, mean NFE "
          f"{sum(out.nfe) / len(out):.1f}; loaded in {load_s:.1f} s]", file=sys.stderr)
