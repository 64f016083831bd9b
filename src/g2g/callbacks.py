"""Training callbacks: the copy-through alarm catches the failure mode of the original implementation
(mixed images that are copies of their content source) while a run is still going."""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from .evaluation.metrics import copy_through
from .wiring import g2g_forward


class CopyThroughAlarm(Callback):
    """Warns when mixed images copy their content source instead of taking the other image's class.

    Every `every_n_steps` generator steps it runs the EMA generator on a fixed batch of pairs of
    different classes (the datamodule's panel pairs, with their class references) and computes the
    copy-through rate of `metrics.copy_through` by the reconstruction criterion: the fraction of pairs
    whose m1 = G(a1, b2) is no farther from x̂1 = G(a1, b1) than x̂1 is from x1, i.e. swapping the class
    code changed the image less than the model's own reconstruction error. It logs the rate as
    `train/copy_through` and warns (rank zero) when it exceeds `threshold`. `g2g eval` reports the same
    rate, and on `shapes` also the exact one against the true mixed image.
    """

    def __init__(self, every_n_steps: int = 500, threshold: float = 0.5, n_pairs: int = 64):
        """
        Args:
            every_n_steps: generator steps between checks; 0 turns the alarm off.
            threshold: warn when more than this fraction of the pairs copies through.
            n_pairs: pairs in the fixed batch taken from the datamodule's `panel_batch(n)`.
        """
        if every_n_steps < 0 or not 0 <= threshold <= 1 or n_pairs < 1:
            raise ValueError("copy-through alarm: every_n_steps ≥ 0, 0 ≤ threshold ≤ 1 and n_pairs ≥ 1")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.n_pairs = n_pairs
        self._batch: dict | None = None  # taken from the datamodule at the first check
        self._last_step = -1
        self.last_rate: float | None = None
        self.n_checked = 0  # pairs in the fixed batch

    @staticmethod
    def _different_classes(batch: dict) -> dict:
        """The pairs whose classes differ; all pairs when the data has no labels (every y is equal)."""
        keep = batch["y1"] != batch["y2"]
        if not keep.any():
            return batch
        return {k: v[keep] for k, v in batch.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        rate = self.rate(pl_module, trainer)
        if rate is None:
            return
        self.last_rate = rate
        pl_module.log("train/copy_through", rate)
        if rate > self.threshold:
            rank_zero_warn(
                f"copy-through alarm at step {step}: in {100 * rate:.0f} % of {self.n_checked} fixed pairs "
                f"the mixed image m1 = G(a1, b2) is within x1's reconstruction error of x1's reconstruction "
                f"(threshold {100 * self.threshold:.0f} %): the decoder ignores the class code or the content "
                f"code carries the class. Levers: class supervision, a smaller or noisier content code.")

    @torch.no_grad()
    def rate(self, pl_module, trainer=None) -> float | None:
        """Copy-through rate of the module's EMA generator (or generator) on the fixed batch."""
        if self._batch is None:
            datamodule: Any = getattr(trainer, "datamodule", None)
            if not hasattr(datamodule, "panel_batch"):
                rank_zero_warn("copy-through alarm: the datamodule has no panel_batch(n); the alarm is off")
                self.every_n_steps = 0
                return None
            self._batch = self._different_classes(datamodule.panel_batch(self.n_pairs))
        b = {k: v.to(pl_module.device) for k, v in self._batch.items()}
        self.n_checked = len(b["x1"])
        gen = getattr(pl_module, "generator_ema", None)
        gen = pl_module.generator if gen is None else gen
        res = g2g_forward(gen, b["x1"], b["x2"], b["ref1"], b["ref2"], long=False)
        return copy_through(res.m1, b["x1"], reconstruction=res.x1_hat).float().mean().item()


def compile_networks(module) -> None:
    """torch.compile every trained and frozen network of a G2GModule in place (state-dict keys unchanged)."""
    nets = [*module.generator.children(), module.discriminator, module.class_critic,
            getattr(module, "perceptual", None), getattr(module, "identity", None)]
    seen: set[int] = set()
    for net in nets:
        if net is not None and id(net) not in seen:
            seen.add(id(net))
            net.compile(dynamic=False)  # batch sizes differ per call; dynamic shapes broke affine_grid's backward


class CompileNetworks(Callback):
    """torch.compile the networks before training: `--trainer.callbacks+=g2g.callbacks.CompileNetworks`.
    Measure it first with `g2g bench --compile` (warm-up steps absorb the compilation): on the 2-core
    CPUs of this project the compiled 64 px `g2g` step was 14 % slower than eager on an Intel Xeon and 3 %
    faster on an AMD EPYC (docs/performance.md;
    on an H200 its compilation of the 128 px cyclefunit networks outlasted a 150 s limit, so CUDA is not
    measured yet)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        compile_networks(pl_module)
