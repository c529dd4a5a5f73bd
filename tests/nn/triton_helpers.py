"""Helpers of the Triton kernel tests: kernel cases under the interpreter, and a compile for an H100.

``TRITON_INTERPRET=1`` must be set before triton is imported, which the test process has already
done; interpreter cases therefore run in a child process (one thread), and must all pass, none
skipped. Triton's front end and bundled CUDA tools compile for sm_90 without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cases_under_interpreter(cases: str, timeout: int) -> None:
    """Run ``cases`` (a path relative to the repository root) and fail with its output if any case
    fails or is skipped."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / cases)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


def compile_for_h100(jit: Any, sig: dict[str, str], constexprs: dict[str, Any]) -> Any:
    """Compile the jitted kernel ``jit`` for sm_90 with the argument types ``sig`` (name -> Triton
    type, ``"constexpr"`` for the names in ``constexprs``, which give their values).

    A compile error fails the test; skipped when this triton lacks ``ASTSource`` / ``GPUTarget`` or a
    back-end tool (ptxas) is missing here (the front end passed then)."""
    import triton
    from triton.compiler.errors import CompilationError

    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as e:
        pytest.skip(f"this triton has no ASTSource / GPUTarget: {e}")
    names = jit.arg_names
    source = ASTSource(jit, sig, {(names.index(k),): v for k, v in constexprs.items()})
    try:
        return triton.compile(source, target=GPUTarget("cuda", 90, 32))
    except CompilationError:
        raise
    except Exception as e:
        pytest.skip(f"the CUDA back end cannot finish on this machine: {type(e).__name__}: {str(e)[-300:]}")


class H100Driver:
    """Stands in for Triton's CUDA driver where torch's kernel analysis (what ``torch.compile`` runs on a
    user kernel to find the tensors it writes) only asks for the target: an sm_90 GPU, without one."""

    def get_current_target(self) -> Any:
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", 90, 32)

    def get_active_torch_device(self) -> Any:
        import torch

        return torch.device("cpu")

    def get_current_device(self) -> int:
        return 0


def write_analysis(monkeypatch: pytest.MonkeyPatch) -> Any:
    """torch's analysis of a user kernel's writes (``identify_accessed_tensors``, what ``torch.compile``
    runs to functionalize it), set up for an sm_90 target without a GPU; skips where this torch lacks
    it or the kernels are the interpreter's (``TRITON_INTERPRET=1``)."""
    import triton

    from decoding.nn.decode_attention import interpreting

    try:
        from torch._higher_order_ops.triton_kernel_wrap import identify_accessed_tensors
    except ImportError as e:
        pytest.skip(f"this torch has no identify_accessed_tensors: {e}")
    if interpreting():
        pytest.skip("TRITON_INTERPRET=1: the jitted kernels are the interpreter's")
    monkeypatch.setattr(triton.runtime.driver, "_active", H100Driver())
    return identify_accessed_tensors
