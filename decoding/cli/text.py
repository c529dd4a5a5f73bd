"""``decoding text``: sample text from a causal LM (default: the embedded SmolLM2-135M-Instruct).

    decoding text --prompt "Write a haiku about the sea." --typical 0.9 --temperature 0.8
    decoding text --prompts-file prompts.txt --n 4 --max-new-tokens 64 --out samples.jsonl

A single sample streams to the terminal as it is generated; several samples print one after
another. ``--out`` writes one JSON line per sample (text, token counts, NFE, seconds).

Other decoders add their options in the marked extension section of :func:`add_parser` and a
branch in :func:`run` (grammar-constrained / aligned decoding, RADD, ASSD).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from decoding.cli.main import UsageError, common_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "text",
        help="sample text from a language model",
        description="Sample text from a causal language model through the decoding loop.",
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", default="smollm2", help="'smollm2' (embedded), a transformers folder or a .gguf file")
    g.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (float32 on CPU, bfloat16 on CUDA)")
    g.add_argument("--engine", default="auto", choices=["auto", "native", "hf"], help="native (Llama, fast) or hf (any causal LM)")
    g = p.add_argument_group("prompts")
    g.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    g.add_argument("--prompts-file", type=Path, help="one prompt per line (.txt) or {\"prompt\": ...} per line (.jsonl)")
    chat = g.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None, help="wrap prompts in the chat template")
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="use prompts as raw text")
    g = p.add_argument_group("sampling (applied in this order: repetition penalty, temperature, top-k, top-p, min-p, typical)")
    g.add_argument("--n", type=int, default=1, help="samples per prompt (default 1)")
    g.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per sample at most (default 128)")
    g.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeats (CTRL)")
    g.add_argument("--temperature", type=float, help="> 0; below 1 sharpens")
    g.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    g.add_argument("--top-p", type=float, help="nucleus mass in (0, 1]")
    g.add_argument("--min-p", type=float, help="keep tokens with p >= min_p * p_max")
    g.add_argument("--typical", type=float, help="locally typical sampling mass in (0, 1) (arXiv 2202.00666)")
    g.add_argument("--greedy", action="store_true", help="argmax decoding")
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable); the text is cut before it")
    g.add_argument("--batch-size", type=int, help="rows decoded together (default: all)")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, help="write one JSON line per sample here")
    g.add_argument("--quiet", action="store_true", help="do not print samples")

    # ---- extension section: other decoders register their option groups here ----------------
    g = p.add_argument_group("grammar (constrained and grammar-aligned decoding)")
    g.add_argument("--grammar", help="a built-in grammar name (json, arithmetic, csv, sql_select, binary) or a .lark file")
    g.add_argument("--aligned", action="store_true", help="grammar-aligned decoding (ASAp, arXiv 2405.21047)")
    g.add_argument("--trie", type=Path, help="ASAp trie file: loaded if present, saved after sampling")
    g.add_argument("--no-budget-close", action="store_true",
                   help="let --grammar samples stop incomplete at --max-new-tokens (default: near the budget, only "
                        "tokens after which the text can still be completed in time are allowed; --aligned never "
                        "restricts: ASAp's estimates assume the grammar's own mask)")
    g = p.add_argument_group("RADD models (absorbing discrete diffusion, arXiv 2406.03736) and AS-ARM models (ASSD)")
    g.add_argument("--steps", type=int, default=128, help="RADD sampling steps (default 128)")
    g.add_argument("--sampler", default="tweedie", help="RADD sampler: tweedie, euler, exact_rate or any_order")
    g.add_argument("--noise", default="loglinear", help="RADD noise schedule: loglinear, cosine or poly:K")
    g.add_argument("--no-cache", action="store_true", help="RADD: call the network every step (same samples, more NFE)")
    g.add_argument("--infill", help="template with blanks (runs of _ , one token each), e.g. 'The ____ sat on the mat'")
    g.add_argument("--length", type=int, help="RADD unconditional sample length in tokens (default: the model's context)")
    g.add_argument("--assd-k", type=int, default=4, help="AS-ARM: tokens per call for ASSD (0 = sequential any-order)")
    g.add_argument("--adaptive", action="store_true", help="AS-ARM: adapt k per row")
    # -------------------------------------------------------------------------------------------
    common_options(p)
    p.set_defaults(func=run)
    return p


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt or [])
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
    if not prompts:
        raise UsageError("give a prompt: --prompt TEXT or --prompts-file FILE")
    return prompts


def check_args(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if args.max_new_tokens <= 0:
        raise UsageError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature is not None and not args.temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature} (use --greedy for argmax decoding)")
    if args.typical is not None and not 0 < args.typical < 1:
        raise UsageError(f"--typical mass must be in (0, 1), got {args.typical}")


class Streamer:
    """Prints row 0's new text as it is generated, holding back what could start a stop string."""

    def __init__(self, decode: Any, prompt_length: int, stops: list[str]) -> None:
        self.decode, self.p = decode, prompt_length
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.printed = 0

    def __call__(self, i: int, state: Any) -> None:
        text = self.decode(state.x[0, self.p :][state.memory["attention_mask"][0, self.p :]].tolist())
        if text.endswith("\ufffd"):
            return  # an incomplete multi-byte character: wait for the next token
        upto = max(self.printed, len(text) - self.hold)
        sys.stdout.write(text[self.printed : upto])
        sys.stdout.flush()
        self.printed = upto


def run(args: argparse.Namespace) -> int:
    check_args(args)
    # ---- extension section: branch to other decoders here (grammar/aligned, RADD, ASSD) ----
    from decoding.text_assd_api import is_as_arm_model
    from decoding.text_masked_api import is_radd_model

    if is_radd_model(args.model):
        return run_radd(args)
    if is_as_arm_model(args.model):
        return run_assd(args)
    if args.infill is not None:
        raise UsageError("--infill needs a RADD or AS-ARM model folder (e.g. --model models/radd-brown)")
    prompts = read_prompts(args)
    if args.aligned:
        if args.grammar is None:
            raise UsageError("--aligned needs --grammar")
        return run_aligned(args, prompts)
    return run_autoregressive(args, prompts)


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if not args.quiet:
        for k, r in enumerate(rows):
            print(f"=== sample {k} (NFE {r.get('nfe')}) ===")
            print(r["text"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(args.out)


def run_radd(args: argparse.Namespace) -> int:
    from decoding.text_masked_api import generate_masked

    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    res = generate_masked(
        args.model, steps=args.steps, sampler=args.sampler, noise=args.noise, cache=not args.no_cache,
        infill=args.infill, num_samples=args.n, length=args.length, temperature=args.temperature or 1.0,
        seed=args.seed, device=args.device,
    )
    rows = [{"text": t, "nfe": nfe, "steps": res["steps"], "sampler": res["sampler"], "cache": res["cache"],
             "seconds": res["seconds"]} for t, nfe in zip(res["texts"], res["nfe"], strict=True)]
    _emit(args, rows)
    print(f"[RADD {args.sampler}, {args.steps} steps, cache {'off' if args.no_cache else 'on'}: "
          f"mean NFE {sum(res['nfe']) / len(res['nfe']):.1f}, {res['seconds']:.2f} s]", file=sys.stderr)
    return 0


def run_assd(args: argparse.Namespace) -> int:
    from decoding.text_assd_api import assd_infill

    if args.infill is None:
        raise UsageError("an AS-ARM model fills blanks: give --infill 'text with ____ blanks'")
    if args.assd_k < 0:
        raise UsageError(f"--assd-k must be >= 1 (or 0 for sequential sampling), got {args.assd_k}")
    res = assd_infill(args.model, args.infill, k=args.assd_k or None, adaptive=args.adaptive,
                      temperature=args.temperature or 1.0, num_samples=args.n, seed=args.seed, device=args.device)
    rows = [{"text": t, "nfe": nfe, "tokens": res["tokens"], "method": res["method"], "k": res["k"],
             "seconds": res["seconds"]} for t, nfe in zip(res["texts"], res["nfe"], strict=True)]
    _emit(args, rows)
    print(f"[{res['method']} k={res['k']}: {res['tokens']} blank tokens, mean NFE "
          f"{sum(res['nfe']) / len(res['nfe']):.1f}, {res['seconds']:.2f} s]", file=sys.stderr)
    return 0


def run_aligned(args: argparse.Namespace, prompts: list[str]) -> int:
    from decoding.adapters.text_lm import load_text_lm
    from decoding.aligned.text import aligned_text
    from decoding.processors import standard_processors

    lm = load_text_lm(args.model, device=args.device, dtype=args.dtype, engine=args.engine)
    procs = standard_processors(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                min_p=args.min_p, typical=args.typical)
    rows = []
    for prompt in prompts:
        out = aligned_text(lm, args.grammar, prompt, n=args.n, max_new_tokens=args.max_new_tokens, trie=args.trie,
                           processors=procs, chat=args.chat, seed=args.seed)
        for text, seq, done in zip(out.texts, out.run.sequences, out.run.complete, strict=True):
            rows.append({"prompt": prompt, "text": text, "new_tokens": len(seq), "complete": done,
                         "nfe": len(seq), "grammar": args.grammar, "aligned": True})
    _emit(args, rows)
    return 0


def run_autoregressive(args: argparse.Namespace, prompts: list[str]) -> int:
    from decoding.adapters.text_lm import load_text_lm
    from decoding.core.loop import NonFiniteLogitsError
    from decoding.text_api import cut_at_stop, generate

    t0 = time.perf_counter()
    lm = load_text_lm(args.model, device=args.device, dtype=args.dtype, engine=args.engine)
    load_s = time.perf_counter() - t0
    stream = len(prompts) * args.n == 1 and not args.quiet
    on_step = None
    if stream:
        p = lm.encode(prompts, args.chat)["input_ids"].shape[1]
        on_step = Streamer(lm.decode, p, args.stop)
    grammar = None
    if args.grammar is not None:
        from decoding.grammar import compile_grammar

        width = getattr(lm.model, "vocab_size", None)
        compiled = compile_grammar(args.grammar, lm.tokenizer, eos_token_id=lm.eos_token_ids[0], vocab_size=width)
        grammar = compiled
        if args.no_budget_close:
            grammar = lambda _lm, b: compiled.constraint(b, lm.device)  # noqa: E731
    try:
        results = generate(
            lm, prompts, n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, typical=args.typical,
            repetition_penalty=args.repetition_penalty, greedy=args.greedy, stop=args.stop, chat=args.chat,
            seed=args.seed, batch_size=args.batch_size, on_step=on_step, grammar=grammar,
        )
    except NonFiniteLogitsError as e:
        raise UsageError(str(e)) from None
    if stream:
        rest = results[0].text[on_step.printed :] if on_step.printed <= len(results[0].text) else ""
        print(cut_at_stop(rest, args.stop)[0])
    elif not args.quiet:
        for r in results:
            closed = ", closed near the token budget" if r.budget_limited else ""
            print(f"=== prompt {r.index} sample {r.sample} ({r.new_tokens} tokens, {r.finish_reason}{closed}) ===")
            print(r.text)
    new_tokens = sum(r.new_tokens for r in results)
    step = args.batch_size or len(results)
    gen_s = sum(r.seconds for r in results[::step])
    print(
        f"[{len(results)} samples, {new_tokens} new tokens in {gen_s:.2f} s ({new_tokens / max(gen_s, 1e-9):.1f} tok/s); "
        f"model {lm.name} ({lm.engine}, {lm.device}, {str(lm.dtype).removeprefix('torch.')}) loaded in {load_s:.1f} s]",
        file=sys.stderr,
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: getattr(args, k) for k in ("temperature", "top_k", "top_p", "min_p", "typical",
                                                   "repetition_penalty", "greedy", "seed", "max_new_tokens")}
        with args.out.open("w", encoding="utf-8") as f:
            for r in results:
                row = r.to_dict()
                row.update(model=lm.name, engine=lm.engine, device=str(lm.device), settings=settings)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0
