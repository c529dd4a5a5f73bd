"""The DD student and its 1-/2-step process (arXiv 2412.17153, sec. 3.3): shapes, dtypes, determinism, re-entry."""

from __future__ import annotations

import pytest
import torch

from decoding.core.loop import decode
from decoding.core.types import Prediction, State
from decoding.dd.flow import TokenFlow
from decoding.dd.pairs import map_noise
from decoding.dd.process import FlowTokens
from decoding.dd.steps import DDProcess
from decoding.dd.student import DDStudentNet, StudentModel, student_inputs
from decoding.models.ar_image import ARImageModel, ARImageNet, class_tokens
from decoding.models.vq import VQAutoencoder
from tests.dd.helpers import TINY_AR, TINY_VQ

pytestmark = pytest.mark.one_thread
N = TINY_AR.num_tokens


def parts(seed: int = 0) -> tuple[ARImageNet, torch.Tensor]:
    torch.manual_seed(seed)
    return ARImageNet(TINY_AR).eval(), VQAutoencoder(TINY_VQ).codes.detach()


def test_student_starts_from_the_teacher() -> None:
    teacher, codes = parts()
    student = DDStudentNet.from_teacher(teacher, codes)
    t, s = teacher.state_dict(), student.net.state_dict()
    assert all(torch.equal(t[k], s[k]) for k in t)
    fit = codes @ student.inp.weight.t()  # least squares of the code embeddings from the code vectors
    best = torch.linalg.lstsq(codes, teacher.embed.weight[:16].detach()).solution
    assert torch.allclose(fit, codes @ best, atol=1e-5) and student.marker.weight.abs().sum() == 0
    student.inp.weight.data.add_(1.0)
    assert not torch.equal(teacher.blocks[0].q.weight, student.inp.weight)  # a copy, not shared


def test_student_shapes_dtypes_and_determinism() -> None:
    teacher, codes = parts()
    student = DDStudentNet.from_teacher(teacher, codes).eval()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(3, N, 4, generator=g)
    tokens = torch.randint(0, 16, (3, N), generator=g)
    values, noisy = student_inputs(codes, tokens, noise, torch.tensor([0, 5, N - 1]))
    assert values.shape == (3, N, 4) and noisy.dtype == torch.bool and noisy.sum(1).tolist() == [N, N - 5, 1]
    assert torch.equal(values[1, :5], codes[tokens[1, :5]]) and torch.equal(values[1, 5:], noise[1, 5:])
    with torch.no_grad():
        logits = student(torch.tensor([1, 2, 3]), values, noisy)
        assert logits.shape == (3, N, 16) and logits.dtype == torch.float32
        assert torch.equal(logits, student(torch.tensor([1, 2, 3]), values, noisy))
        # causal: the output at position i does not see inputs after i
        changed = values.clone()
        changed[:, 30:] += 1.0
        assert torch.allclose(student(torch.tensor([1, 2, 3]), changed, noisy)[:, :30], logits[:, :30], atol=1e-6)
        half = student.to(torch.bfloat16)(torch.tensor([1, 2, 3]), values, noisy)
        assert half.dtype == torch.bfloat16 and half.shape == logits.shape
    with pytest.raises(ValueError, match="student inputs"):
        student(torch.tensor([1]), values, noisy)


class ExactStudent:
    """An oracle student: the teacher's exact map from the fixed tokens and the noise after them (one-hot logits)."""

    def __init__(self, teacher: ARImageModel, codes: torch.Tensor) -> None:
        self.teacher, self.codes = teacher, codes
        self.calls = 0

    def __call__(self, state: State) -> Prediction:
        self.calls += 1
        k = int(state.t[0])
        prompt = torch.cat([class_tokens(state.memory["labels"], TINY_AR), state.x[:, :k]], 1)
        rest = decode(self.teacher, FlowTokens(self.codes), {"input_ids": prompt, "noise": state.memory["noise"][:, k:]},
                      steps=N - k, seed=0).x[:, 1 + k :]
        tokens = torch.cat([state.x[:, :k], rest], 1)
        return Prediction(logits=torch.nn.functional.one_hot(tokens, 16).float().log())


def test_one_and_two_steps_of_an_exact_student_equal_the_teachers_map() -> None:
    """Re-entry keeps the first k tokens and the same noise after them: with the exact map, 1 step = 2 steps = the teacher."""
    net, codes = parts(3)
    teacher = ARImageModel(net, 1.5)
    noise = torch.randn(4, N, 4, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 4, 7, 9])
    target = map_noise(teacher, codes, labels, noise, TokenFlow())
    for steps in (1, 2):
        oracle = ExactStudent(teacher, codes)
        res = decode(oracle, DDProcess(N, 20), {"noise": noise, "labels": labels}, steps=steps, seed=0)
        assert torch.equal(res.x, target) and oracle.calls == steps and res.nfe.eq(steps).all()
        assert res.state.t.eq(N).all() and res.state.done.all()


def test_two_steps_fix_the_first_k_tokens_of_the_first_call() -> None:
    calls = iter([torch.zeros(2, N, 16), torch.zeros(2, N, 16)])

    def model(state: State) -> Prediction:
        logits = next(calls).clone()
        logits[..., 3 if state.step == 0 else 9] = 1.0
        return Prediction(logits=logits)

    res = decode(model, DDProcess(N, 10), {"noise": torch.zeros(2, N, 4), "labels": torch.tensor([1, 2])}, steps=2)
    assert res.x[:, :10].eq(3).all() and res.x[:, 10:].eq(9).all()
    proc = DDProcess(N, 10)
    assert proc.schedule(1).tolist() == [0, N] and proc.schedule(2).tolist() == [0, 10, N]
    with pytest.raises(ValueError, match="1 or 2 steps"):
        proc.schedule(3)
    with pytest.raises(ValueError, match="reenter must lie"):
        DDProcess(N, N)


def test_student_model_reads_the_state() -> None:
    teacher, codes = parts()
    model = StudentModel(DDStudentNet.from_teacher(teacher, codes).eval())
    noise = torch.randn(2, N, 4, generator=torch.Generator().manual_seed(6))
    a = decode(model, DDProcess(N, 24), {"noise": noise, "labels": torch.tensor([1, 8])}, steps=2, seed=0)
    b = decode(model, DDProcess(N, 24), {"noise": noise, "labels": torch.tensor([1, 8])}, steps=2, seed=99)
    assert torch.equal(a.x, b.x) and a.x.dtype == torch.long and a.x.shape == (2, N)
    one = decode(model, DDProcess(N, 24), {"noise": noise, "labels": torch.tensor([1, 8])}, steps=1).x
    assert torch.equal(one[:, :24], a.x[:, :24])  # the second step keeps what the first fixed
