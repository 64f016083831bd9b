"""`g2g bench`: speed of the real training step (SPEC §8).

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
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import yaml

# an image is one image through the step: a batch of B pairs holds 2B images (`g2g bench --batch` counts
# images, as the original implementation did: batch 4 = 2 pairs)
RESULT_FIELDS = ("preset", "image_size", "batch_images", "batch_pairs", "device", "precision", "compile", "data", "steps",
                 "warmup", "step_s_median", "step_s_min", "step_s_max", "step_s_iqr", "images_per_s",
                 "data_s_median", "peak_memory_mb", "memory_kind", "gflop_per_step", "achieved_gflops",
                 "matmul_peak_gflops", "peak_ratio", "time_split", "cudnn_benchmark", "random_frozen_weights", "overrides",
                 "machine")


def machine() -> dict:
    """What the numbers were measured on."""
    import torch
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "load_1min": round(os.getloadavg()[0], 2),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:  # the code that was measured
        import subprocess
        info["code"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                                      capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        info["code"] = "unknown"
    return info


def matmul_peak(device: str, dtype, sizes: tuple[int, ...] | None = None, reps: int = 5) -> float:
    """Best GFLOP/s of an n×n matmul (2n³ FLOPs) on `device` in `dtype` over the given sides n (CPU:
    2048 and 4096, the issue's reference; CUDA: 8192)."""
    import torch
    best_rate = 0.0
    for n in sizes or ((8192,) if device == "cuda" else (2048, 4096)):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        for i in range(reps + 1):  # the first call warms up
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                best_rate = max(best_rate, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
        del a, b
    return best_rate


# ---- building what `g2g train --preset NAME` builds ----

def load_config(preset: str, size: int, batch: int, overrides: list[str]) -> dict:
    """The preset's YAML with the image size, batch size and KEY=VALUE overrides (dotted keys, YAML
    values, e.g. model.channels_last=true) applied; every term on from the first step."""
    from .cli import preset_path
    config = yaml.safe_load(preset_path(preset).read_text())
    config["data"]["image_size"] = config["model"]["generator"]["image_size"] = size
    config["data"]["batch_size"] = batch
    config["model"]["panel_every"] = 0
    # every timed step is the full step: a preset that adds the long reconstruction part-way through a run
    # (long_start) would otherwise time its first steps without it (and a compiled run would compile it late)
    config["model"]["long_start"] = 0.0
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
    """Point the config at random weights in the published layouts for frozen networks whose files the
    user does not have; returns their names (empty: every frozen network has its real weights)."""
    import torch
    used = []
    generator = model.get("generator", {})
    if (generator.get("class_encoder") == "vggface2" or model.get("lambda_identity", 0) > 0) \
            and not model.get("identity_weights"):
        from .networks.identity import IdentityNet
        torch.save(IdentityNet().state_dict(), folder / "resnet50_ft_dag.pth")
        model["identity_weights"] = str(folder / "resnet50_ft_dag.pth")
        used.append("vggface2 resnet50_ft")
    if model.get("perceptual") == "vgg16" and not model.get("perceptual_weights"):
        from torchvision.models.vgg import cfgs, make_layers
        from .networks.perceptual import WEIGHTS_FILE, default_weights_path
        if not default_weights_path().is_file():
            features = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
            torch.save(features, folder / WEIGHTS_FILE)
            model["perceptual_weights"] = str(folder / WEIGHTS_FILE)
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


# ---- timing ----

def matmul_seconds(events, device: str) -> float:
    """Seconds of profiled time in the operations whose FLOPs the FLOP counter counts: convolutions (forward
    and backward) and matrix multiplies, each by its own (self) time on `device`, without the operations it
    calls (a convolution backward's bias-gradient sum, its layout copies). `events`: key_averages(). Only
    aten operations: on CUDA the kernels they launch are events too (some named after convolutions), and
    their time is already the operation's own."""
    total = 0.0
    for e in events:
        if e.key.startswith("aten::") and ("conv" in e.key or e.key in ("aten::mm", "aten::addmm", "aten::bmm",
                                                                        "aten::baddbmm")):
            if device == "cuda":
                total += getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            else:
                total += e.self_cpu_time_total
    return total / 1e6


class _Timer:
    """Lightning callback: step times (batch start → batch end, device synchronised), data waits (batch
    end → next batch start), FLOPs of one step after the timed ones, and an optional profiler trace."""

    def __init__(self, warmup: int, steps: int, device: str, profile_dir: str | None):
        self.warmup, self.steps, self.device, self.profile_dir = warmup, steps, device, profile_dir
        self.step_s: list[float] = []
        self.data_s: list[float] = []
        self.flops = 0
        self.matmul_s = None  # profiled: seconds per step in convolutions and matmuls
        self.i = 0
        self._t = self._end = None
        self._mode = None

    def sync(self):
        if self.device == "cuda":
            import torch
            torch.cuda.synchronize()

    @property
    def total(self) -> int:
        return self.warmup + self.steps + 1 + (2 if self.profile_dir else 0)

    def callback(self):
        from lightning.pytorch.callbacks import Callback
        timer = self

        class TimerCallback(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                timer.start()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                timer.end(trainer)
        return TimerCallback()

    def start(self):
        import torch
        self.sync()
        now = time.perf_counter()
        if self.i == self.warmup and self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if self._end is not None and self.warmup <= self.i < self.warmup + self.steps:
            self.data_s.append(now - self._end)
        if self.i == self.warmup + self.steps:  # FLOPs of one step, not timed
            from torch.utils.flop_counter import FlopCounterMode
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()
        elif self.profile_dir and self.i == self.warmup + self.steps + 1:
            from torch.profiler import ProfilerActivity, profile
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device == "cuda" else [])
            self._mode = profile(activities=acts, record_shapes=True)
            self._mode.__enter__()
        self._t = time.perf_counter()

    def end(self, trainer):
        self.sync()
        now = time.perf_counter()
        if self.warmup <= self.i < self.warmup + self.steps:
            self.step_s.append(now - self._t)
        if self.i == self.warmup + self.steps:
            self._mode.__exit__(None, None, None)
            self.flops = self._mode.get_total_flops()
        elif self.profile_dir and self.i == self.warmup + self.steps + 2:
            self._mode.__exit__(None, None, None)
            out = Path(self.profile_dir)
            out.mkdir(parents=True, exist_ok=True)
            self._mode.export_chrome_trace(str(out / "trace.json"))
            key = "self_device_time_total" if self.device == "cuda" else "self_cpu_time_total"
            try:
                table = self._mode.key_averages().table(sort_by=key, row_limit=40)
            except (AttributeError, KeyError, ValueError):  # older profilers call it self_cuda_time_total
                table = self._mode.key_averages().table(sort_by="self_cuda_time_total", row_limit=40)
            (out / "ops.txt").write_text(table)
            self.matmul_s = matmul_seconds(self._mode.key_averages(), self.device) / 2
        self.i += 1
        if self.i >= self.total:
            trainer.should_stop = True
        self._end = time.perf_counter()


def run_bench(preset: str, size: int, pairs: int, device: str = "cpu", steps: int = 10, warmup: int = 3,
              data: str = "random", precision: str | None = None, compile: bool = False,
              profile: str | None = None, overrides: list[str] = ()) -> dict:
    """Measure the training step of `preset`; returns the result dict (RESULT_FIELDS)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import warnings

    import lightning as L
    import torch

    from .data.datamodule import G2GDataModule
    from .module import G2GModule

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device here; use --device cpu")
    if data not in ("random", "preset"):
        raise ValueError(f"--data must be 'random' or 'preset', not {data!r}")
    if steps < 1 or warmup < 0:
        raise ValueError("--steps must be at least 1 and --warmup at least 0")
    if pairs < 1:
        raise ValueError("--batch must be an even number of images, at least 2 (one pair)")
    config = load_config(preset, size, pairs, list(overrides))
    load_start = round(os.getloadavg()[0], 2)
    precision = precision or ("bf16-mixed" if device == "cuda" else "32-true")
    model_args = dict(config["model"])
    with tempfile.TemporaryDirectory() as tmp:
        frozen = random_frozen_weights(model_args, Path(tmp))
        dm = None
        if data == "preset":
            dm = G2GDataModule(**config["data"])
            model_args.setdefault("num_classes", dm.num_classes)
        else:  # labels are only read by class-conditional critics
            model_args.setdefault("num_classes", 10)
        torch.manual_seed(config.get("seed_everything", 0))
        module = G2GModule(**model_args)
    if compile:
        from .callbacks import compile_networks
        compile_networks(module)
    timer = _Timer(warmup, steps, device, profile)
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
    if len(timer.step_s) < steps:
        raise RuntimeError(f"only {len(timer.step_s)} of {steps} steps ran")
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
        "preset": preset, "image_size": size, "batch_images": 2 * pairs, "batch_pairs": pairs, "device": device, "precision": precision,
        "compile": compile, "data": data, "steps": steps, "warmup": warmup,
        "step_s_median": med, "step_s_min": min(timer.step_s), "step_s_max": max(timer.step_s),
        "step_s_iqr": q[2] - q[0], "images_per_s": 2 * pairs / med,
        "data_s_median": statistics.median(timer.data_s) if timer.data_s else 0.0,
        "peak_memory_mb": round(peak_mb, 1), "memory_kind": kind,
        "gflop_per_step": timer.flops / 1e9, "achieved_gflops": achieved,
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()}, "peak_ratio": achieved / peaks[ref],
        "peak_ratio_of": ref, "time_split": split, "cudnn_benchmark": device == "cuda", "random_frozen_weights": frozen, "overrides": list(overrides),
        "machine": {**machine(), "load_1min_start": load_start},
    }


def summary(r: dict) -> str:
    flag = f", random {' + '.join(r['random_frozen_weights'])} weights" if r["random_frozen_weights"] else ""
    return (f"{r['preset']} {r['image_size']} px, batch {2 * r['batch_pairs']} ({r['batch_pairs']} pairs), {r['device']} {r['precision']}"
            f"{' compiled' if r['compile'] else ''}: {r['step_s_median']:.3f} s/step (median of {r['steps']}, "
            f"{r['step_s_min']:.3f}–{r['step_s_max']:.3f}), {r['images_per_s']:.1f} images/s, data "
            f"{r['data_s_median'] * 1e3:.1f} ms, {r['gflop_per_step']:.1f} GFLOP/step, "
            f"{r['achieved_gflops']:.1f} GFLOP/s = {100 * r['peak_ratio']:.0f} % of {r['peak_ratio_of']} "
            f"matmul peak {r['matmul_peak_gflops'][r['peak_ratio_of']]:.1f}, peak memory "
            f"{r['peak_memory_mb']:.0f} MB ({r['memory_kind']}), load {r['machine'].get('load_1min_start', '?')}→{r['machine']['load_1min']}{flag}"
            + (f"; profiled: {split_summary(r['time_split'])}" if r.get("time_split") else ""))


def split_summary(split: dict) -> str:
    return (f"convolutions and matmuls {100 * split['matmul_share']:.0f} % of the step at "
            f"{split['matmul_gflops']:,.1f} GFLOP/s = {100 * split['matmul_peak_ratio']:.0f} % of the peak "
            f"(the step's ratio if all else took no time)")


def bench_main(args) -> int:
    if args.batch < 2 or args.batch % 2:
        raise ValueError(f"--batch counts images and a step takes pairs: give an even number >= 2, not {args.batch}")
    result = run_bench(args.preset, args.size, args.batch // 2, args.device, args.steps, args.warmup, args.data,
                       args.precision, args.compile, args.profile, args.set)
    if args.out:  # FILE.json: this result; FILE.jsonl: appended as one line (a sweep in one file)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".jsonl":
            with out.open("a") as f:
                f.write(json.dumps(result) + "\n")
        else:
            out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return 0
