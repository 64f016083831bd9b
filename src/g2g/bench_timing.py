"""What `g2g bench` measures besides the module: the machine, the device's matmul peak, and a Lightning
callback that times the training steps, counts one step's FLOPs and optionally profiles two more."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def machine() -> dict:
    """What the numbers were measured on."""
    import torch
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "load_1min": round(os.getloadavg()[0], 2),
                            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:  # the code that was measured
        info["code"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                                      capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        info["code"] = "unknown"
    return info


def matmul_peak(device: str, dtype: Any, sizes: tuple[int, ...] | None = None, reps: int = 5) -> float:
    """Best GFLOP/s of an n×n matmul (2n³ FLOPs) on `device` in `dtype` over the given sides n (CPU:
    2048 and 4096, the reference sizes; CUDA: 8192)."""
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


def matmul_seconds(events: Any, device: str) -> float:
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
                total += getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
            else:
                total += e.self_cpu_time_total
    return total / 1e6


class StepTimer:
    """Step times (batch start → batch end, device synchronised), data waits (batch end → next batch
    start), FLOPs of one step after the timed ones, and an optional profiler trace of two more steps.
    `callback()` is the Lightning callback that feeds it."""

    def __init__(self, warmup: int, steps: int, device: str, profile_dir: str | None):
        self.warmup, self.steps, self.device, self.profile_dir = warmup, steps, device, profile_dir
        self.step_s: list[float] = []
        self.data_s: list[float] = []
        self.flops = 0
        self.matmul_s: float | None = None  # profiled: seconds per step in convolutions and matmuls
        self.i = 0
        self._t = 0.0
        self._end: float | None = None
        self._mode: Any = None

    def sync(self) -> None:
        if self.device == "cuda":
            import torch
            torch.cuda.synchronize()

    @property
    def total(self) -> int:
        return self.warmup + self.steps + 1 + (2 if self.profile_dir else 0)

    def callback(self) -> Any:
        from lightning.pytorch.callbacks import Callback
        timer = self

        class TimerCallback(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                timer.start()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                timer.end(trainer)
        return TimerCallback()

    def start(self) -> None:
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

    def end(self, trainer: Any) -> None:
        self.sync()
        now = time.perf_counter()
        if self.warmup <= self.i < self.warmup + self.steps:
            self.step_s.append(now - self._t)
        if self.i == self.warmup + self.steps:
            self._mode.__exit__(None, None, None)
            self.flops = self._mode.get_total_flops()
        elif self.profile_dir and self.i == self.warmup + self.steps + 2:
            self._mode.__exit__(None, None, None)
            self.save_profile(Path(self.profile_dir))
        self.i += 1
        if self.i >= self.total:
            trainer.should_stop = True
        self._end = time.perf_counter()

    def save_profile(self, out: Path) -> None:
        """The trace and the table of the profiled steps into `out`; their time in convolutions and matmuls."""
        out.mkdir(parents=True, exist_ok=True)
        self._mode.export_chrome_trace(str(out / "trace.json"))
        key = "self_device_time_total" if self.device == "cuda" else "self_cpu_time_total"
        try:
            table = self._mode.key_averages().table(sort_by=key, row_limit=40)
        except (AttributeError, KeyError, ValueError):  # older profilers call it self_cuda_time_total
            table = self._mode.key_averages().table(sort_by="self_cuda_time_total", row_limit=40)
        (out / "ops.txt").write_text(table)
        self.matmul_s = matmul_seconds(self._mode.key_averages(), self.device) / 2
