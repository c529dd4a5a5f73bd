"""``load`` / ``generate`` for image diffusion models: a named solver, the model's own schedule, guidance wrappers.

Every image goes through :func:`decoding.decode` with the continuous process
(:class:`~decoding.processes.continuous.ContinuousProcess`). The starting noise of all ``n``
images is drawn first from one generator seeded with ``seed`` on the model's device: the same
seed on the same device gives the same images, and another ``batch_size`` the same starting
noise. Guidance methods are model wrappers, applied in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from decoding.api.generation import Generation
from decoding.api.options import OptionError
from decoding.api.run import Run
from decoding.api.zoo import Handle, Source
from decoding.control.api import (
    generate_search,
    is_control,
    needs_stochastic_solver,
    parse_control,
    wrap_control,
)
from decoding.core.loop import decode
from decoding.core.protocols import Model
from decoding.core.types import new_generator
from decoding.models.image import ImageDiffusionModel, load_image_model
from decoding.processes.continuous import ContinuousProcess
from decoding.solvers.dc_solver import RATIOS_FILENAME
from decoding.solvers.ems import EMS_FILENAME
from decoding.solvers.registry import SOLVERS, get_solver, model_file
from decoding.solvers.timesteps import SPACINGS, default_spacing
from decoding.wrappers.agd import AGD, attach
from decoding.wrappers.guidance import (
    CFG,
    CFGPP,
    PAG,
    GuidedModel,
    Stitch,
    StitchModel,
    attention_layer_indices,
)

#: Other names users type for the registry's solvers.
SOLVER_ALIASES = {"dpm_solver_pp": "dpmpp_2m", "dpm_solver_pp_2m": "dpmpp_2m", "dpm_solver_pp_3m": "dpmpp_3m", "unipc": "unipc_bh2"}
#: The text forms of the guidance option.
FORMS = ("cfg:SCALE[,rescale=PHI][,interval=LO-HI], cfgpp:LAMBDA, pag:SCALE[,layers=A+B], agd:SCALE[,adapters=FOLDER], "
         "stitch:SMALL_MODEL:FRACTION, "
         "dts:ROLLOUTS,class=Y[,lam=L][,children=K]")


def image_handle(model: ImageDiffusionModel, name: str, card: dict[str, Any], device: Any) -> Handle:
    """A :class:`~decoding.api.zoo.Handle` of the image-diffusion kind around an engine model."""
    return Handle(model, name, card, device, "image-diffusion")


def load_image(source: Source, device: torch.device, dtype: torch.dtype | None) -> Handle:
    return image_handle(load_image_model(source.path, device, dtype), source.name, source.card, device)


def solver_name(name: str) -> str:
    """The registry name of ``name`` (aliases such as ``dpm_solver_pp`` resolved)."""
    resolved = SOLVER_ALIASES.get(name, name)
    if resolved not in SOLVERS:
        raise OptionError(f"unknown solver {name!r}; choose one of: {', '.join(sorted(set(SOLVERS) | set(SOLVER_ALIASES)))}")
    return resolved


def parse_guidance(spec: Any) -> Any:
    """A guidance object from itself or its text form.

    Text forms: ``cfg:W`` (options ``,rescale=PHI``, ``,interval=LO-HI``), ``cfgpp:LAMBDA``,
    ``pag:S`` (option ``,layers=NAME+NAME`` or indices), ``agd:S`` (option ``,adapters=FOLDER``),
    ``stitch:SMALL_MODEL:FRACTION``.
    """
    if isinstance(spec, CFG | CFGPP | PAG | AGD | Stitch) or is_control(spec):
        return spec
    if not isinstance(spec, str):
        raise OptionError(f"guidance entries are guidance objects (e.g. decoding.CFG(3.0)) or text like 'cfg:3', got {spec!r}")
    try:
        search = parse_control(spec)  # dts:... (decoding.control)
    except ValueError as e:
        raise OptionError(str(e)) from None
    if search is not None:
        return search
    head, *opts = spec.split(",")
    name, _, arg = head.partition(":")
    try:
        kw = dict(o.split("=", 1) for o in opts)
    except ValueError:
        raise OptionError(f"guidance {spec!r}: options are written ,key=value") from None
    try:
        if name == "cfg" and set(kw) <= {"rescale", "interval"}:
            interval = None
            if "interval" in kw:
                lo, _, hi = kw["interval"].partition("-")
                interval = (float(lo), float(hi))
            return CFG(float(arg), rescale=float(kw.get("rescale", 0.0)), interval=interval)
        if name == "cfgpp" and not kw:
            return CFGPP(float(arg))
        if name == "pag" and set(kw) <= {"layers"}:
            layers = tuple(kw["layers"].split("+")) if "layers" in kw else None
            return PAG(float(arg), layers=layers)
        if name == "agd" and set(kw) <= {"adapters"}:
            return AGD(float(arg), adapters=kw.get("adapters"))
        if name == "stitch" and not kw:
            small, _, fraction = arg.rpartition(":")
            if not small:
                raise ValueError("stitch needs the small model's name before the fraction")
            return Stitch(small, float(fraction))
    except ValueError as e:
        raise OptionError(f"guidance {spec!r}: {e}; write {FORMS}") from None
    raise OptionError(f"unknown guidance {spec!r}; known: {FORMS}")


def guided(handle: Handle, specs: Sequence[Any]) -> Model:
    """The engine model with the guidance wrappers of ``specs`` (one batched call for CFG / CFG++ / PAG)."""
    kinds: dict[type, Any] = {}
    for g in specs:
        if type(g) in kinds:
            raise OptionError(f"guidance lists {type(g).__name__} twice; give each method once")
        kinds[type(g)] = g
    stitch = kinds.pop(Stitch, None)
    agd = kinds.pop(AGD, None)
    if agd is not None:
        if kinds or stitch is not None:
            others = ", ".join(g.spec() for g in [*kinds.values(), *([stitch] if stitch else [])])
            raise OptionError(f"AGD replaces CFG with one call per step and combines with no other guidance; got also {others}")
        try:
            return attach(handle.model, agd, handle.name, handle.card)
        except ValueError as e:
            raise OptionError(str(e)) from None

    def wrap(h: Handle) -> Model:
        if not kinds:
            return h.model
        pag = kinds.get(PAG)
        layers = attention_layer_indices(h.model.net, pag.layers) if pag is not None else ()
        try:
            return GuidedModel(h.model, h.model.null_label, kinds.get(CFG), kinds.get(CFGPP), pag, layers)
        except ValueError as e:
            raise OptionError(str(e)) from None

    if stitch is None:
        return wrap(handle)
    small = stitch.small if isinstance(stitch.small, Handle) else _load_small(stitch.small, handle)
    check_stitchable(handle, small)
    return StitchModel(wrap(handle), wrap(small), stitch.fraction)


def _load_small(name: Any, large: Handle) -> Handle:
    from decoding.api.zoo import resolve

    source = resolve(name)
    if source.kind != "image-diffusion":
        raise OptionError(f"T-Stitch needs an image diffusion model as the small model; {name} is {source.kind}")
    return load_image(source, large.device, large.model.dtype)


def check_stitchable(large: Handle, small: Handle) -> None:
    """T-Stitch needs one schedule and one data space (image shape, classes) for both models."""
    a, b = large.model, small.model
    if a.schedule.key != b.schedule.key:
        raise OptionError(f"T-Stitch: {small.name} uses schedule {b.schedule.key}, {large.name} {a.schedule.key}; they must share it")
    shape = lambda m: (m.net.cfg.in_channels, m.net.cfg.image_size, m.num_classes)  # noqa: E731
    if shape(a) != shape(b):
        raise OptionError(f"T-Stitch: {small.name} has (channels, size, classes) {shape(b)}, {large.name} {shape(a)}")


def labels_for(class_label: int | Sequence[int] | Tensor | None, n: int, num_classes: int) -> Tensor:
    """``(n,)`` labels: one class for all, one per image, or the null class (``num_classes``) for None."""
    if class_label is None:
        return torch.full((n,), num_classes, dtype=torch.long)
    y = torch.as_tensor(class_label)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise OptionError(f"class_label must be an integer or integers, got {class_label!r}")
    y = y.long().reshape(-1)
    if y.numel() == 1:
        y = y.expand(n).clone()
    if y.numel() != n:
        raise OptionError(f"give one class label or n={n} of them, got {y.numel()}")
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        raise OptionError(
            f"class {int(y[bad][0])} is out of range: the model has classes 0..{num_classes - 1} "
            "(omit class_label for unconditional samples)"
        )
    return y


#: solvers that read files made for one set of weights: (option, file name in the model folder, how to make it)
MODEL_FILES: dict[str, tuple[str, str, str]] = {
    "dpm_solver_v3": ("ems", EMS_FILENAME, "python benchmarks/solver_v3.py --model MODEL --save"),
    "dc_solver": ("ratios", RATIOS_FILENAME, "python benchmarks/solver_dc.py --model MODEL --save"),
}


def model_statistics(handle: Handle | str, solver: str, opts: dict[str, Any]) -> dict[str, Any]:
    """``opts`` plus what the model's folder ships for ``solver``: DPM-Solver-v3's statistics, DC-Solver's ratios.

    Both belong to one set of weights, so they are read from the folder the model was loaded from
    (``handle``: a loaded model, or its folder / zoo name) unless ``solver_options`` names them
    (``ems=`` / ``ratios=`` / ``cpr=``). A solver that needs them when the folder has none is an
    :class:`OptionError` saying how to make them (DC-Solver without ratios would silently be plain UniPC).
    """
    name = handle if isinstance(handle, str) else handle.name
    if solver not in MODEL_FILES or MODEL_FILES[solver][0] in opts or "cpr" in opts:
        return opts
    key, filename, how = MODEL_FILES[solver]
    path = model_file(name, filename)  # the loaded folder, or the zoo model of that name
    if not path.is_file():
        raise OptionError(
            f"{solver} needs {name}'s {'statistics' if key == 'ems' else 'searched ratios'} and {path} does not exist: "
            f"make them with `{how.replace('MODEL', name)}` (on a GPU, minutes) or pass "
            f"solver_options={{'{key}': FILE}}"
        )
    return {**opts, key: path}


def check_interval(specs: Sequence[Any], schedule: Any, steps: int, spacing: str) -> None:
    """Refuse a CFG ``interval`` that holds none of the times the sampler calls the model at: its guidance
    would silently never apply (e.g. an interval written in [0, 1] on a schedule whose time runs to 999)."""
    cfg = next((g for g in specs if isinstance(g, CFG) and g.interval is not None), None)
    if cfg is None:
        return
    from decoding.solvers.timesteps import make_timesteps

    times = make_timesteps(schedule, steps, spacing)[:-1].tolist()  # the last point is the data end, never called
    lo, hi = cfg.interval
    if not any(lo <= t <= hi for t in times):
        shown = ", ".join(f"{t:g}" for t in times[:6]) + (", ..." if len(times) > 6 else "")
        raise OptionError(f"guidance {cfg.spec()}: the interval holds none of the {len(times)} times the sampler calls the "
                          f"model at ({shown}); it is in the schedule's time, from {min(times):g} to {max(times):g} here")


def generate_image(
    handle: Handle,
    prompt: Any,
    run: Run,
    *,
    steps: int | None = None,
    class_label: int | Sequence[int] | Tensor | None = None,
    solver: str | None = None,
    spacing: str | None = None,
    guidance: Sequence[Any] | None = None,
    solver_options: dict[str, Any] | None = None,
) -> Generation:
    """See :func:`decoding.generate`."""
    if prompt is not None:
        raise OptionError(f"{handle.name} is an image diffusion model: it takes class_label=..., not a prompt")
    d = {"solver": "dpmpp_2m", "steps": 10, **handle.card.get("defaults", {})}
    specs = [parse_guidance(g) for g in (guidance or [])]
    control = [g for g in specs if is_control(g)]  # decoding.control: steering wrappers and tree search
    if solver is None and needs_stochastic_solver(control):
        solver = "ddpm"
    name = solver_name(str(d["solver"] if solver is None else solver))
    steps = int(d["steps"] if steps is None else steps)
    if steps < 1:
        raise OptionError(f"steps must be >= 1, got {steps}")
    model = handle.model
    n = run.n
    labels = labels_for(class_label, n, model.num_classes)
    plain = [g for g in specs if not is_control(g)]
    if any(not isinstance(g, Stitch | PAG) for g in plain) and class_label is None:
        raise OptionError("CFG, CFG++ and AGD need class labels: give class_label (unconditional samples have nothing to guide towards)")
    try:
        wrapped = wrap_control(guided(handle, plain), control, n, run.batch_size)
    except ValueError as e:
        raise OptionError(str(e)) from None
    opts = model_statistics(handle, name, dict(solver_options or {}))
    if name == "dc_solver" and "cpr" in opts:  # ratios predicted for this number of steps
        opts.setdefault("steps", steps)
    try:
        built = get_solver(name, **opts)
    except (ValueError, FileNotFoundError) as e:
        raise OptionError(str(e)) from None
    spacing = str(spacing or d.get("spacing") or default_spacing(built))  # the grid measured best for it
    if spacing not in SPACINGS:
        raise OptionError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    check_interval(plain, model.schedule, steps, spacing)
    process = ContinuousProcess(model.schedule, built, spacing=spacing)
    dev = model.device
    cfg = model.net.cfg
    settings = {
        "n": n, "seed": run.seed, "class_label": None if class_label is None else labels.tolist(),
        "solver": name, "steps": steps, "spacing": spacing, "guidance": [g.spec() for g in specs],
        "solver_options": {k: v for k, v in (solver_options or {}).items() if isinstance(v, int | float | str | bool)},
        "batch_size": run.batch_size, "device": str(dev), "dtype": str(model.dtype).removeprefix("torch."),
        "schedule": model.schedule.key, "torch": torch.__version__,
    }
    search = next((g for g in control if not hasattr(g, "wrap")), None)
    if search is not None:
        try:
            return generate_search(handle, wrapped, process, search, n=n, steps=steps, labels=labels, seed=run.seed,
                                   progress=run.progress, settings=settings,
                                   unused={"batch_size": run.batch_size, "on_step": run.on_step, "sync_every": run.sync_every})
        except ValueError as e:
            raise OptionError(str(e)) from None
    generator = new_generator(run.seed, dev)
    noise = torch.randn((n, cfg.in_channels, cfg.image_size, cfg.image_size), generator=generator, device=dev)
    chunks, nfe, seconds = [], [], 0.0
    for lo, b in run.chunks():
        res = decode(wrapped, process, noise[lo : lo + b], steps=steps, generator=generator,
                     cond=labels[lo : lo + b].to(dev), **run.decode_options())
        chunks.append(res.x.float().cpu())
        nfe += res.nfe.tolist()
        seconds += res.seconds
    images = torch.cat(chunks)
    if not torch.isfinite(images).all():  # clamp() would pass NaN on as a black image
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise OptionError(f"{bad} of {n} samples diverged (NaN or inf in the image): the guidance {settings['guidance']} "
                          f"or the solver {name!r} with {steps} steps is numerically unstable here; lower the scale or "
                          "take more steps")
    return Generation(
        kind=handle.kind, model=handle.name, images=images.clamp(-1, 1), labels=labels, nfe=nfe,
        finish_reason=["complete"] * n, seconds=seconds, settings=settings,
    )
