"""`g2g bench`: speed of the real training step.

The module and data are built from a preset YAML as `g2g train --preset NAME` builds them (the same
G2GModule and G2GDataModule constructor arguments, with the image size, batch size and `--set`
overrides applied), and the step is G2GModule.training_step run by a Lightning Trainer: critic update,
generator update, EMA, with the preset's precision flag (bf16-mixed by default on CUDA). Frozen
pretrained networks get random weights in their published file layouts when the user has no weight
files (flagged in the result: same FLOPs and speed, meaningless images).

Per run: warm-up steps (excluded), N timed steps (median, spread, images/s), the time spent waiting
for data between steps, peak memory (RSS on CPU, allocator peak on CUDA), FLOPs of one step counted by
torch.utils.flop_counter, achieved FLOP/s, and the device's matmul peak measured in the same process
(fp32 on CPU; bf16 and fp32 on CUDA) with the ratio. With a profile, also the time split: the share of the
step spent in convolutions and matmuls (the operations the FLOP counter counts) and their own FLOP rate, an
upper bound on the whole step's ratio that no fusion of the other operations can pass.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .bench_timing import StepTimer, machine, matmul_peak
from .configs import load_preset

# an image is one image through the step: a batch of B pairs holds 2B images (`g2g bench --batch` counts
# images, as the original implementation did: batch 4 = 2 pairs)
RESULT_FIELDS = ("preset", "image_size", "batch_images", "batch_pairs", "device", "precision", "compile", "data",
                 "steps", "warmup", "step_s_median", "step_s_min", "step_s_max", "step_s_iqr", "images_per_s",
                 "data_s_median", "peak_memory_mb", "memory_kind", "gflop_per_step", "achieved_gflops",
                 "matmul_peak_gflops", "peak_ratio", "time_split", "cudnn_benchmark", "random_frozen_weights",
                 "overrides", "machine")


# ---- building what `g2g train --preset NAME` builds ----

def load_config(preset: str, size: int, batch: int, overrides: list[str]) -> dict:
    """The preset's configuration with the image size, batch size and KEY=VALUE overrides (dotted keys, YAML
    values, e.g. model.channels_last=true) applied; every term on from the first step."""
    config = load_preset(preset)
    model = config["model"]
    config["data"]["image_size"] = model["generator"]["image_size"] = size
    config["data"]["batch_size"] = batch  # panels are a callback of `g2g train`: none here
    # every timed step is the full step: a preset that adds the long reconstruction part-way through a run
    # (long_start) or raises the identity weight over a warm-up would otherwise time its first steps without
    # them (and a compiled run would compile them late)
    model.setdefault("schedule", {}).update(long_start=0.0, identity_warmup_start=0, identity_warmup_steps=0)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE (e.g. model.channels_last=true), got {item!r}")
        *path, last = key.split(".")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return config


def random_frozen_weights(model: dict, folder: Path) -> list[str]:
    """Point the model options at random weights in the published layouts for frozen networks whose files
    the user does not have; returns their names (empty: every frozen network has its real weights)."""
    import torch
    used = []
    frozen = model["frozen"] = dict(model.get("frozen") or {})
    if (model.get("generator", {}).get("class_encoder") == "vggface2"
            or (model.get("loss") or {}).get("lambda_identity", 0) > 0) and not frozen.get("identity_weights"):
        from .networks.identity import IdentityNet
        torch.save(IdentityNet().state_dict(), folder / "resnet50_ft_dag.pth")
        frozen["identity_weights"] = str(folder / "resnet50_ft_dag.pth")
        used.append("vggface2 resnet50_ft")
    if frozen.get("perceptual") == "vgg16" and not frozen.get("perceptual_weights"):
        from torchvision.models.vgg import cfgs, make_layers

        from .networks.perceptual import WEIGHTS_FILE, default_weights_path
        if not default_weights_path().is_file():
            features = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
            torch.save(features, folder / WEIGHTS_FILE)
            frozen["perceptual_weights"] = str(folder / WEIGHTS_FILE)
            used.append("vgg16")
    return used


def random_batches(config: dict, num_classes: int, device: str):
    """One random batch of the preset's shapes (pairs, K references, labels), already on `device` and
    served for ever: data loading and the host-to-device copy cost nothing, so the step is timed alone."""
    import torch
    data = config["data"]
    b, s, k = data["batch_size"], data["image_size"], data.get("k_refs", 1)
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(b, 3, s, s, generator=g) * 2 - 1 for _ in range(2))
    if data.get("supervised", True):
        ref1, ref2 = (torch.rand(b, k, 3, s, s, generator=g) * 2 - 1 for _ in range(2))
    else:  # unsupervised pairs: the class code comes from the image itself
        ref1, ref2 = x1.unsqueeze(1), x2.unsqueeze(1)
    y1, y2 = (torch.randint(max(num_classes, 1), (b,), generator=g) for _ in range(2))
    batch = {"x1": x1, "x2": x2, "ref1": ref1, "ref2": ref2, "y1": y1, "y2": y2}
    batch = {name: t.to(device) for name, t in batch.items()}  # (`k` above is the number of references)

    class Forever:
        def __iter__(self):
            while True:
                yield batch
    return Forever()


def check_options(device: str, data: str, steps: int, warmup: int, pairs: int) -> None:
    """One-line errors for options that cannot be measured, before anything is built."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device here; use --device cpu")
    if data not in ("random", "preset") and not Path(data).is_dir():
        raise ValueError(f"--data must be 'random', 'preset' or a dataset folder; {data!r} is no folder")
    if steps < 1 or warmup < 0:
        raise ValueError("--steps must be at least 1 and --warmup at least 0")
    if pairs < 1:
        raise ValueError("--batch must be an even number of images, at least 2 (one pair)")


def build_module(config: dict, data: str) -> tuple[Any, Any, list[str]]:
    """(G2GModule, G2GDataModule or None for random batches, names of frozen networks given random weights)
    as `g2g train` builds them from `config`; `data`: 'random', else the config's data module is built."""
    import torch

    from .data.datamodule import G2GDataModule
    from .module import G2GModule
    model_args = dict(config["model"])
    with tempfile.TemporaryDirectory() as tmp:
        frozen = random_frozen_weights(model_args, Path(tmp))
        dm = None
        if data != "random":
            dm = G2GDataModule(**config["data"])
            model_args.setdefault("num_classes", dm.num_classes)
        else:  # labels are only read by class-conditional critics
            model_args.setdefault("num_classes", 10)
        torch.manual_seed(config.get("seed_everything", 0))
        return G2GModule(**model_args), dm, frozen


def fit_timed(module: Any, dm: Any, config: dict, timer: StepTimer, precision: Any) -> None:
    """Run the timer's steps of `module` in a Lightning fit, on the data module or on random batches;
    `precision`: Lightning's flag (e.g. '32-true', 'bf16-mixed')."""
    import warnings

    import lightning as L
    device = timer.device
    # cuDNN autotuning (Lightning's benchmark flag): a step's shapes never change, so the fastest
    # convolution algorithms are picked once in the warm-up steps; CPU: no effect
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
                        benchmark=device == "cuda",
                        max_steps=timer.total + 1, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, use_distributed_sampler=False, callbacks=[timer.callback()],
                        default_root_dir=tempfile.gettempdir())
    if dm is not None:
        dm.hparams.steps_per_epoch = max(dm.hparams.steps_per_epoch, timer.total + 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(does not have many workers|Trying to infer the `batch_size`).*")
        if dm is None:
            trainer.fit(module, train_dataloaders=random_batches(config, module.hparams.num_classes, device))
        else:
            trainer.fit(module, datamodule=dm)
    if len(timer.step_s) < timer.steps:
        raise RuntimeError(f"only {len(timer.step_s)} of {timer.steps} steps ran")


def step_numbers(timer: StepTimer, pairs: int, precision: str) -> dict:
    """The timed steps' statistics, memory, FLOP rate against the device's matmul peak and time split."""
    import torch
    device, steps = timer.device, timer.steps
    if device == "cuda":
        peak_mb, kind = torch.cuda.max_memory_allocated() / 2 ** 20, "cuda allocator peak"
    else:
        peak_mb, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    med = statistics.median(timer.step_s)
    q = statistics.quantiles(timer.step_s, n=4) if steps > 1 else [med, med, med]
    peaks = {"fp32": matmul_peak(device, torch.float32)}
    if device == "cuda":
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    ref = "bf16" if "bf16" in precision and device == "cuda" else "fp32"
    achieved = timer.flops / med / 1e9
    # where the step's time goes (profiled runs): the convolutions' and matmuls' share of the step, and their
    # own FLOP rate against the peak, the ratio the whole step would reach if nothing else took any time
    split = None
    if timer.matmul_s:
        rate = timer.flops / timer.matmul_s / 1e9
        split = {"matmul_s_per_step": timer.matmul_s, "matmul_share": timer.matmul_s / med,
                 "matmul_gflops": rate, "matmul_peak_ratio": rate / peaks[ref]}
    return {
        "step_s_median": med, "step_s_min": min(timer.step_s), "step_s_max": max(timer.step_s),
        "step_s_iqr": q[2] - q[0], "images_per_s": 2 * pairs / med,
        "data_s_median": statistics.median(timer.data_s) if timer.data_s else 0.0,
        "peak_memory_mb": round(peak_mb, 1), "memory_kind": kind,
        "gflop_per_step": timer.flops / 1e9, "achieved_gflops": achieved,
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}, "peak_ratio": achieved / peaks[ref],
        "peak_ratio_of": ref, "time_split": split,
    }


def run_bench(preset: str, size: int, pairs: int, device: str = "cpu", steps: int = 10, warmup: int = 3,
              data: str = "random", precision: str | None = None, compile: bool = False,
              profile: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Measure the training step of `preset`; returns the result dict (RESULT_FIELDS). `data`: 'random' (one
    random batch: the step alone), 'preset' (the preset's data module) or a dataset folder (read by the preset's
    data module)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    check_options(device, data, steps, warmup, pairs)
    config = load_config(preset, size, pairs, list(overrides))
    if data not in ("random", "preset"):
        from .bench_data import dataset_of
        config["data"].update(dataset=dataset_of(Path(data)), root=data)
    load_start = round(os.getloadavg()[0], 2)
    precision = precision or ("bf16-mixed" if device == "cuda" else "32-true")
    module, dm, frozen = build_module(config, data)
    if compile:
        from .callbacks import compile_networks
        compile_networks(module)
    timer = StepTimer(warmup, steps, device, profile)
    fit_timed(module, dm, config, timer, precision)
    return {
        "preset": preset, "image_size": size, "batch_images": 2 * pairs, "batch_pairs": pairs, "device": device,
        "precision": precision, "compile": compile, "data": data, "steps": steps, "warmup": warmup,
        **step_numbers(timer, pairs, precision),
        "cudnn_benchmark": device == "cuda", "random_frozen_weights": frozen, "overrides": list(overrides),
        "machine": {**machine(), "load_1min_start": load_start},
    }


def summary(r: dict) -> str:
    flag = f", random {' + '.join(r['random_frozen_weights'])} weights" if r["random_frozen_weights"] else ""
    load = f"{r['machine'].get('load_1min_start', '?')}→{r['machine']['load_1min']}"
    return (f"{r['preset']} {r['image_size']} px, batch {2 * r['batch_pairs']} ({r['batch_pairs']} pairs), "
            f"{r['device']} {r['precision']}{' compiled' if r['compile'] else ''}: "
            f"{r['step_s_median']:.3f} s/step (median of {r['steps']}, "
            f"{r['step_s_min']:.3f}–{r['step_s_max']:.3f}), {r['images_per_s']:.1f} images/s, data "
            f"{r['data_s_median'] * 1e3:.1f} ms, {r['gflop_per_step']:.1f} GFLOP/step, "
            f"{r['achieved_gflops']:.1f} GFLOP/s = {100 * r['peak_ratio']:.0f} % of {r['peak_ratio_of']} "
            f"matmul peak {r['matmul_peak_gflops'][r['peak_ratio_of']]:.1f}, peak memory "
            f"{r['peak_memory_mb']:.0f} MB ({r['memory_kind']}), load {load}{flag}"
            + (f"; profiled: {split_summary(r['time_split'])}" if r.get("time_split") else ""))


def split_summary(split: dict) -> str:
    return (f"convolutions and matmuls {100 * split['matmul_share']:.0f} % of the step at "
            f"{split['matmul_gflops']:,.1f} GFLOP/s = {100 * split['matmul_peak_ratio']:.0f} % of the peak "
            f"(the step's ratio if all else took no time)")


def run_data_bench(preset: str, size: int, pairs: int, root: str, workers: list[int] | None = None,
                   batches: int = 20, warmup: int = 3, step_data: str = "random",
                   step_images_per_s: float | None = None, overrides: list[str] | tuple[str, ...] = (),
                   **step_options: Any) -> dict:
    """The loader of `preset` reading the dataset folder `root`, alone, for each worker count (default: 0, 1,
    2 and one per core), beside the step's rate: `step_images_per_s` when given (2 images per pair), else the
    step timed by `run_bench` (`step_options`) on one random batch (`step_data` 'random': the step alone) or
    on the folder (`step_data` 'folder': the step fed by the preset's loader, as training runs). Returns the
    result dict (bench_data.DATA_RESULT_FIELDS)."""
    from .bench_data import dataset_of, default_workers, loader_result, time_loader
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # else idle OpenMP threads spin beside the workers
    check_options(step_options.get("device", "cpu"), root, step_options.get("steps", 10), warmup, pairs)
    if batches < 1 or (step_images_per_s is not None and step_images_per_s <= 0):
        raise ValueError("--loader-batches must be at least 1 and --step-images-per-s positive")
    if step_data not in ("random", "folder"):
        raise ValueError(f"--step-data must be 'random' or 'folder', not {step_data!r}")
    load_start = round(os.getloadavg()[0], 2)
    config = load_config(preset, size, pairs, list(overrides))
    data = {**config["data"], "dataset": dataset_of(Path(root)), "root": root}
    loader = [time_loader(data, w, batches, warmup) for w in (workers or default_workers())]
    step = None
    if step_images_per_s is None:
        step = run_bench(preset, size, pairs, data=root if step_data == "folder" else "random", warmup=warmup,
                         overrides=overrides, **step_options)
        step_images_per_s, source = step["images_per_s"], f"timed, {step_data} data"
    else:
        source = "given"
    return {"preset": preset, "image_size": size, "batch_images": 2 * pairs, "batch_pairs": pairs, "data": root,
            "dataset": data["dataset"], "train_images": loader[0]["train_images"], "k_refs": data.get("k_refs", 1),
            "supervised": data.get("supervised", True), "images_per_pair": loader[0]["images_per_pair"],
            "loader": loader, "step": step, "step_source": source, **loader_result(loader, step_images_per_s),
            "machine": {**machine(), "load_1min_start": load_start}}


def bench_main(args) -> int:
    if args.batch < 2 or args.batch % 2:
        raise ValueError(f"--batch counts images and a step takes pairs: give an even number >= 2, not {args.batch}")
    loader_options = {"workers": args.workers, "batches": args.loader_batches, "step_data": args.step_data,
                      "step_images_per_s": args.step_images_per_s}
    if args.data in ("random", "preset"):
        if any(v is not None for v in loader_options.values()):
            raise ValueError("--workers, --loader-batches, --step-data and --step-images-per-s time a loader: "
                             "give a dataset folder with --data DIR")
        result = run_bench(args.preset, args.size, args.batch // 2, args.device, args.steps, args.warmup,
                           args.data, args.precision, args.compile, args.profile, args.set)
        text = summary(result)
    else:
        from .bench_data import data_summary
        options = {k: v for k, v in loader_options.items() if v is not None}
        result = run_data_bench(args.preset, args.size, args.batch // 2, args.data, warmup=args.warmup,
                                overrides=args.set, device=args.device, steps=args.steps, precision=args.precision,
                                compile=args.compile, profile=args.profile, **options)
        text = data_summary(result)
    if args.out:  # FILE.json: this result; FILE.jsonl: appended as one line (a sweep in one file)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".jsonl":
            with out.open("a") as f:
                f.write(json.dumps(result) + "\n")
        else:
            out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0
