"""Students through ``decoding.load`` / ``decoding.generate`` and ``decoding generate``: the 1-step decode, options, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import decoding as dc
from decoding.api.distilled import DistilledHandle
from decoding.cli.main import main as cli_main
from decoding.core.types import new_generator
from tests.distill.conftest import Students

pytestmark = pytest.mark.one_thread


def ddim_by_hand(handle: DistilledHandle, noise: torch.Tensor, label: int, w: float) -> torch.Tensor:
    """The student's deterministic sampler written out: DDIM over the "time" grid of its steps, one call per step."""
    schedule, net = handle.model.schedule, handle.model.net
    ts = torch.linspace(schedule.t_max, 0.0, handle.steps + 1, dtype=torch.float64)
    ts[-1] = schedule.t_end
    z = noise
    for i in range(handle.steps):
        a, s, a_n, s_n = (float(f(ts[k])) for k in (i, i + 1) for f in (schedule.alpha, schedule.sigma))
        lam = schedule.lambda_(ts[i]).float().expand(z.shape[0])
        with torch.no_grad():
            v = net(z, lam, torch.full((z.shape[0],), label), torch.full((z.shape[0],), w))
        x0, eps = a * z - s * v, s * z + a * v
        z = a_n * x0 + s_n * eps
    return z.clamp(-1, 1)


@pytest.mark.parametrize("which", ["steps1", "steps2"])
def test_n_step_student_is_ddim_on_its_grid(students: Students, which: str) -> None:
    folder = getattr(students, which)
    student = dc.load(folder, device="cpu")
    assert isinstance(student, DistilledHandle) and student.kind == "distilled-diffusion"
    out = dc.generate(student, class_label=2, n=3, steps=student.steps, seed=5)
    noise = torch.randn(3, 1, 28, 28, generator=new_generator(5, torch.device("cpu")))
    assert torch.allclose(out.images, ddim_by_hand(student, noise, 2, 0.5), atol=1e-5)  # card default: cfg:1.5, w = 0.5
    assert out.nfe == [float(student.steps)] * 3 and out.settings["w"] == 0.5 and out.settings["sampler"] == "deterministic"
    w2 = dc.generate(student, class_label=2, n=3, seed=5, guidance=["cfg:3"])
    assert torch.allclose(w2.images, ddim_by_hand(student, noise, 2, 2.0), atol=1e-5) and w2.settings["guidance"] == ["cfg:3"]


def test_one_step_student_through_generate_and_the_cli(students: Students, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    student = dc.load(students.steps1)
    out = dc.generate(student, class_label=2, steps=1)
    assert out.images.shape == (1, 1, 28, 28) and out.nfe == [1.0] and out.labels.tolist() == [2]
    with pytest.raises(dc.OptionError, match=r"1-step distilled student: it samples with steps=1 only, got steps=4"):
        dc.generate(student, class_label=2, steps=4)
    png = tmp_path / "one.png"
    assert cli_main(["generate", str(students.steps1), "--class", "2", "--steps", "1", "--n", "4", "--out", str(png),
                     "--device", "cpu"]) == 0
    assert png.is_file() and "1 NFE each" in capsys.readouterr().out
    assert cli_main(["generate", str(students.steps1), "--class", "2", "--steps", "2", "--device", "cpu"]) == 2
    assert "steps=1 only" in capsys.readouterr().err


def test_stochastic_sampler_and_the_stage1_student(students: Students) -> None:
    two = dc.load(students.steps2)
    det = dc.generate(two, class_label=[1, 2, 3], n=3, seed=0)
    sto = dc.generate(two, class_label=[1, 2, 3], n=3, seed=0, sampler="stochastic")
    assert sto.nfe == [2.0] * 3 and sto.settings["sampler"] == "stochastic" and not torch.allclose(det.images, sto.images)
    assert torch.equal(sto.images, dc.generate(two, class_label=[1, 2, 3], n=3, seed=0, sampler="stochastic").images)
    one = dc.load(students.steps1)  # one step: the stochastic sampler is the deterministic one
    assert torch.equal(dc.generate(one, class_label=4, seed=1, sampler="stochastic").images,
                       dc.generate(one, class_label=4, seed=1).images)
    stage1 = dc.load(students.stage1)
    out = dc.generate(stage1, class_label=[0, 9], n=2, steps=4, solver="dpmpp_2m")
    assert out.nfe == [4.0, 4.0] and out.settings["solver"] == "dpmpp_2m"  # CFG would spend 8
    assert dc.generate(stage1, class_label=0, steps=6, solver="ddim", spacing="time").nfe == [6.0]


def test_bad_options_are_refused(students: Students) -> None:
    two, stage1 = dc.load(students.steps2), dc.load(students.stage1)
    cases = [
        (two, dict(class_label=1, guidance=["cfg:5"]), r"CFG scales 1 to 4 .*got cfg:5"),
        (two, dict(class_label=1, guidance=["cfg:0.5"]), r"CFG scales 1 to 4"),
        (two, dict(class_label=1, guidance=["pag:2"]), "one plain CFG scale"),
        (two, dict(class_label=1, guidance=["cfg:2", "cfg:3"]), "one plain CFG scale"),
        (two, dict(class_label=1, guidance=["cfg:2,rescale=0.5"]), "one plain CFG scale"),
        (two, dict(), "give class_label"),
        (two, dict(class_label=1, solver="dpmpp_2m"), "solver and spacing do not apply"),
        (two, dict(class_label=1, sampler="euler"), "unknown sampler"),
        (two, dict(class_label=11), "out of range"),
        (stage1, dict(class_label=1, sampler="stochastic"), "stage-1 student"),
        (stage1, dict(class_label=1, solver="dpm_solver_v3", steps=4), "takes no solver options, which solver 'dpm_solver_v3' needs"),
        (stage1, dict(class_label=1, solver="nope"), "unknown solver"),
        (two, dict(class_label=1, cache=True), "does not apply to distilled-diffusion"),
    ]
    for model, options, message in cases:
        with pytest.raises(dc.OptionError, match=message):
            dc.generate(model, **options)
