"""Image tasks through the runner: a tiny random UNet checkpoint, the solvers, the classifier metric, the diffusion classifier."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from decoding.evals.runner import run_suite
from decoding.evals.suite import load_suite
from decoding.models.image import SIZES, save_unet
from decoding.nn.unet import UNet
from decoding.train.image import TRAIN_SCHEDULE

SUITE = """
name = "img"
[[task]]
name = "solvers"
kind = "image"
model = "unet"
decoder = "solver"
samples = 4
batch = 2
metrics = ["trajectory_error", "class_accuracy", "images_per_s", "nfe"]
model_args = { checkpoint = "CKPT" }
settings = { spacing = "logsnr" }
sweep = { solver = ["ddim", "dpmpp_2m"], steps = [2, 4] }
metric_args = { trajectory_error = { steps = 8 }, class_accuracy = { classifier = "CLS" } }

[[task]]
name = "uncond"
kind = "image"
model = "unet"
decoder = "solver"
samples = 2
batch = 2
metrics = ["nfe"]
model_args = { checkpoint = "CKPT" }
settings = { classes = "none", steps = 2, guidance = 2.0 }

[[task]]
name = "classify"
kind = "classify"
model = "unet"
decoder = "diffusion_classifier"
samples = 3
batch = 3
metrics = ["accuracy_vs_samples"]
model_args = { checkpoint = "CKPT" }
settings = { n_samples = 2 }
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_unet(
        UNet(copy.deepcopy(SIZES["tiny"])).eval(),
        root / "unet",
        {"prediction": "v", "schedule": TRAIN_SCHEDULE},
    )
    from decoding.evals.classifier import FashionCNN
    from decoding.train.classifier import save_classifier

    save_classifier(FashionCNN(width=4, hidden=8).eval(), root / "cls", {"test_accuracy": 0.0})
    return root


def test_image_tasks_run_and_report(tmp_path, folders):
    path = tmp_path / "img.toml"
    path.write_text(SUITE.replace("CKPT", str(folders / "unet")).replace("CLS", str(folders / "cls")))
    out = tmp_path / "out"
    summary = run_suite(load_suite(path), out, progress=False)
    solvers, uncond, classify = summary["tasks"]
    assert [c["label"] for c in solvers["configs"]] == [
        "solver=ddim,steps=2",
        "solver=ddim,steps=4",
        "solver=dpmpp_2m,steps=2",
        "solver=dpmpp_2m,steps=4",
    ]
    assert [c["nfe"] for c in solvers["configs"]] == [2, 4, 2, 4]
    assert all(0 <= c["class_accuracy"] <= 1 and c["trajectory_error"] > 0 for c in solvers["configs"])
    assert uncond["configs"][0]["nfe"] == 4  # guidance: two network rows per step
    curve = classify["configs"][0]["accuracy_vs_samples"]
    assert curve["x"] == [1, 2] and classify["configs"][0]["nfe"] == 20
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["output"]["class"] for x in lines[:4]] == [0, 1, 2, 3]
    assert [x["output"]["label"] for x in lines[-3:]] == [9, 2, 1]  # the first Fashion-MNIST test labels
    assert (out / "plots" / "solvers-c0-samples.png").is_file() and "solvers-trajectory_error-vs-nfe.png" in (
        out / "report.md"
    ).read_text()


def test_paired_noise_makes_configs_comparable(tmp_path, folders):
    path = tmp_path / "img.toml"
    path.write_text(SUITE.replace("CKPT", str(folders / "unet")).replace("CLS", str(folders / "cls")))
    out = tmp_path / "out"
    run_suite(load_suite(path), out, progress=False, report=False, only=["solvers"])
    from decoding.evals.storage import Store, chunk_name

    summary = json.loads((out / "summary.json").read_text())
    ids = [c["config_id"] for c in summary["tasks"][0]["configs"]]
    store, chunks = Store(out), [chunk_name(c, 2, 2) for c in (0, 1)]
    a = store.read_tensor("solvers", ids[0], chunks, "images")
    b = store.read_tensor("solvers", ids[2], chunks, "images")
    assert a.shape == (4, 1, 28, 28) and a.dtype == torch.uint8
    # DDIM and DPM-Solver++(2M) agree on their first step from the same noise; at 2 steps they stay close.
    assert (a.float() - b.float()).abs().mean() < 40


def test_solver_grid_and_statistics_come_as_in_generate(tmp_path, folders):
    """Without ``spacing`` a config runs on its solver's measured grid (as ``decoding.generate``);
    DPM-Solver-v3 / DC-Solver read the checkpoint's files, and a checkpoint without them is refused."""
    from decoding.api.options import OptionError
    from decoding.evals.tasks_image import ImageJob, solver_decoder, unet_model
    from decoding.solvers.registry import get_solver
    from decoding.solvers.timesteps import default_spacing

    im = unet_model({"checkpoint": str(folders / "unet")}, torch.device("cpu"))
    for name in ("ddim", "dpmpp_2m", "dualfast_unipc"):
        job = ImageJob(im, solver_decoder({"solver": name, "steps": 3}))
        assert job.spacing == default_spacing(get_solver(name))
    assert ImageJob(im, solver_decoder({"solver": "ddim", "steps": 3})).spacing == "time"
    assert ImageJob(im, solver_decoder({"solver": "ddim", "steps": 3, "spacing": "logsnr"})).spacing == "logsnr"
    with pytest.raises(ValueError, match="spacing must be one of"):
        solver_decoder({"solver": "ddim", "steps": 3, "spacing": "linear"})
    with pytest.raises(OptionError, match="solver_v3.py --model"):
        ImageJob(im, solver_decoder({"solver": "dpm_solver_v3", "steps": 3}))
    with pytest.raises(OptionError, match="solver_dc.py --model"):
        ImageJob(im, solver_decoder({"solver": "dc_solver", "steps": 3}))


def test_bad_image_settings(tmp_path, folders):
    path = tmp_path / "img.toml"
    text = SUITE.replace("CKPT", str(folders / "unet")).replace("CLS", str(folders / "cls"))
    path.write_text(text.replace('solver = ["ddim", "dpmpp_2m"]', 'solver = ["ddim", "heun"]'))
    with pytest.raises(ValueError, match="unknown solver 'heun'; choose one of"):
        run_suite(load_suite(path), tmp_path / "o", progress=False)
    path.write_text(text.replace('solver = ["ddim", "dpmpp_2m"]', 'solver = ["ddim", "dpmpp_3m"]'))
    with pytest.raises(ValueError, match="task 'solvers': dpmpp_3m of order 3 needs at least 3 steps, got 2"):
        run_suite(load_suite(path), tmp_path / "o", progress=False)  # before any sampling
    path.write_text(text.replace("settings = { n_samples = 2 }", "settings = { n_samples = 2, ns = [3] }"))
    with pytest.raises(ValueError, match=r"ns entry must be an integer in 1..n_samples"):
        run_suite(load_suite(path), tmp_path / "o", progress=False)
    path.write_text(
        text.replace('checkpoint = "' + str(folders / "unet") + '" }\nsettings', 'checkpoint = "nope" }\nsettings')
    )
    with pytest.raises(ValueError, match="task 'solvers': no model 'nope': not a folder"):
        run_suite(load_suite(path), tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_fid_metric_through_the_runner(tmp_path, folders):
    from decoding.data.fashion_mnist import load_fashion_mnist
    from decoding.evals.fid import feature_stats, inception_features, save_reference

    real, _ = load_fashion_mnist("test")
    mu, sigma = feature_stats(inception_features(real[:16]))
    ref = save_reference(tmp_path / "ref.safetensors", mu, sigma, 16, "16 test images")
    text = SUITE.replace("CKPT", str(folders / "unet")).replace("CLS", str(folders / "cls"))
    text = text.replace(
        'metrics = ["trajectory_error", "class_accuracy", "images_per_s", "nfe"]', 'metrics = ["fid"]'
    )
    text = text.replace(
        'metric_args = { trajectory_error = { steps = 8 }, class_accuracy = { classifier = "'
        + str(folders / "cls")
        + '" } }',
        f'metric_args = {{ fid = {{ reference = "{ref}" }} }}',
    )
    path = tmp_path / "img.toml"
    path.write_text(text)
    summary = run_suite(load_suite(path), tmp_path / "out", progress=False, report=False, only=["solvers"])
    fids = [c["fid"] for c in summary["tasks"][0]["configs"]]
    assert all(f > 0 and f == f for f in fids) and summary["tasks"][0]["configs"][0]["fid_samples"] == 4
