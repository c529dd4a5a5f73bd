"""Chain the rounds of progressive distillation (stage 2 of arXiv 2210.03142): ``2N -> N`` until ``--until`` steps.

    python -m decoding.train.distill_rounds --teacher runs/distill/stage1 --teacher-steps 64 --until 1 \\
        --root runs/distill --minutes 1.2 --deadline-minutes 9 -- --device cuda --data data/fashion-mnist

Each round is one ``decoding train distill-progressive`` run: student ``ROOT/steps-N`` (saved),
checkpoint ``ROOT/steps-N-ck``; the next round's teacher is the previous round's student. Rerunning
the same command continues where it stopped: a finished round (its ``train_log.json`` says so) is
skipped, an unfinished one is resumed from its checkpoint; rounds before the last finished one may be
missing (only the last student need be carried to a new machine). ``--minutes`` is each round's time budget
(the skeleton fixes the number of steps from the measured speed); with ``--deadline-minutes`` no
round starts that would end after the deadline. Everything after ``--`` goes to every round.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from decoding.models.image import read_config
from decoding.train.checkpoint import has_checkpoint

_ROUND_OVERHEAD_MINUTES = 0.5  # process start, data, teacher, validations and export around a round's budget


def finished(folder: Path) -> bool:
    """The student folder holds weights and a training log of a finished run."""
    log = folder / "train_log.json"
    return (folder / "model.safetensors").is_file() and log.is_file() and bool(json.loads(log.read_text()).get("finished"))


def rounds(teacher_steps: int, until: int) -> list[int]:
    """The students' steps: ``teacher_steps / 2, / 4, ...`` down to ``until`` (all powers-of-two halvings)."""
    out, n = [], teacher_steps
    while n > until:
        if n % 2:
            raise ValueError(f"{n} steps cannot be halved: --teacher-steps / 2^k must stay even down to --until {until}")
        n //= 2
        out.append(n)
    if not out or out[-1] != until:
        raise ValueError(f"halving {teacher_steps} steps does not reach --until {until}")
    return out


def main(argv: list[str] | None = None) -> int:
    from decoding.cli.train import train_main

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m decoding.train.distill_rounds", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="a distilled student: the stage-1 one or the last finished round")
    p.add_argument("--teacher-steps", type=int, default=None, help="its steps (required for a stage-1 student), e.g. 64")
    p.add_argument("--until", type=int, default=1, help="the last round's student steps")
    p.add_argument("--root", type=Path, required=True, help="folder of the students steps-N and checkpoints steps-N-ck")
    p.add_argument("--minutes", type=float, default=None, help="time budget of each round (else give --steps after --)")
    p.add_argument("--deadline-minutes", type=float, default=None, help="start no round that would end after this")
    a = p.parse_args(argv)
    start = time.monotonic()
    own = read_config(a.teacher).get("distill", {}).get("steps")
    steps = own if own is not None else a.teacher_steps
    if steps is None:
        p.error(f"{a.teacher} is a stage-1 student: give --teacher-steps")
    teacher, first = Path(a.teacher), own is None
    chain = rounds(int(steps), a.until)
    # the chain goes on from its last finished round: the rounds before it need not be present (a later session
    # carries only the last finished student, not the whole chain)
    done = [finished(a.root / f"steps-{n}") for n in chain]
    last = max((i for i, d in enumerate(done) if d), default=-1)
    for i, n in enumerate(chain):
        out, ck = a.root / f"steps-{n}", a.root / f"steps-{n}-ck"
        if i < last and not done[i]:
            print(f"round {2 * n} -> {n}: skipped, a later round is finished ({a.root / f'steps-{chain[last]}'})")
        elif done[i]:
            print(f"round {2 * n} -> {n}: done earlier ({out})")
        else:
            if a.minutes is not None and a.deadline_minutes is not None:
                left = a.deadline_minutes - (time.monotonic() - start) / 60
                if left < a.minutes + _ROUND_OVERHEAD_MINUTES:
                    print(f"round {2 * n} -> {n}: not started, {left:.1f} min left before the deadline; rerun this command to go on")
                    return 0
            args = ["--teacher", str(teacher), *(["--teacher-steps", str(2 * n)] if first else []), "--checkpoint", str(ck),
                    "--out", str(out), *(["--resume"] if has_checkpoint(ck) else []),
                    *(["--minutes", str(a.minutes)] if a.minutes is not None else []), *extra]
            print(f"round {2 * n} -> {n}: decoding train distill-progressive {' '.join(args)}", flush=True)
            train_main("distill-progressive", args)
            if not finished(out):
                print(f"round {2 * n} -> {n}: stopped before its last step; rerun this command to resume it")
                return 1
        teacher, first = out, False
    print(f"rounds done: {', '.join(str(a.root / f'steps-{n}') for n in chain if finished(a.root / f'steps-{n}'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
