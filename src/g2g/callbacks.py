"""Training callbacks: the copy-through alarm catches the failure mode of the original implementation
(mixed images that are copies of their content source) and the collapse alarm a model that draws nothing
useful, while a run is still going."""
from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from .collapse import Diagnosis, diagnose
from .evaluation.metrics import copy_through
from .wiring import g2g_forward

log = logging.getLogger(__name__)


class _PanelPairsAlarm(Callback):
    """An alarm that checks the module on the datamodule's fixed panel pairs, taken at its first check."""

    alarm = "alarm"
    every_n_steps: int
    n_pairs: int
    patience: int
    streak = 0   # consecutive failed checks …
    _since = -1  # … since this step
    _batch: dict | None = None

    def _count(self, failed: bool, step: int) -> bool:
        """Record one check at `step`; whether `patience` checks in a row have now failed."""
        self.streak = self.streak + 1 if failed else 0
        self._since = step if self.streak == 1 else self._since
        return self.streak >= self.patience

    def _pairs(self, trainer, pl_module) -> dict | None:
        """The datamodule's fixed batch of n_pairs (`panel_batch(n)`) on the module's device, kept to the
        pairs of different classes (all pairs when the data has no labels: every y is equal); None, with a
        warning and the alarm off, when the datamodule has none."""
        if self._batch is None:
            datamodule: Any = getattr(trainer, "datamodule", None)
            if not hasattr(datamodule, "panel_batch"):
                rank_zero_warn(f"{self.alarm}: the datamodule has no panel_batch(n); the alarm is off")
                self.every_n_steps = 0
                return None
            batch = datamodule.panel_batch(self.n_pairs)
            keep = batch["y1"] != batch["y2"]
            self._batch = {k: v[keep] for k, v in batch.items()} if keep.any() else batch
        return {k: v.to(pl_module.device) for k, v in self._batch.items()}


def _eval_generator(pl_module):
    """The module's EMA generator, or its generator where it has none."""
    gen = getattr(pl_module, "generator_ema", None)
    return pl_module.generator if gen is None else gen


class CopyThroughAlarm(_PanelPairsAlarm):
    """Warns when mixed images copy their content source instead of taking the other image's class.

    Every `every_n_steps` generator steps it runs the EMA generator on a fixed batch of pairs of
    different classes (the datamodule's panel pairs, with their class references) and computes the
    copy-through rate of `metrics.copy_through` by the reconstruction criterion: the fraction of pairs
    whose m1 = G(a1, b2) is no farther from x̂1 = G(a1, b1) than x̂1 is from x1, i.e. swapping the class
    code changed the image less than the model's own reconstruction error. It logs the rate as
    `train/copy_through` and warns (rank zero) when it exceeds `threshold` at `patience` checks in a row:
    early in training a healthy model copies for a while (the `general` preset on fonts, seed 0: 52 % at
    step 500, 39 % at step 1,000 and no more in 25,000 steps; seven variants of it 47–58 % at step 500 and
    at most 45 % from step 1,000), and an alarm that fires in every healthy run is one users learn to ignore.
    `g2g eval` reports the same rate, and on `shapes` also the exact one against the true mixed image.
    """

    alarm = "copy-through alarm"

    def __init__(self, every_n_steps: int = 500, threshold: float = 0.5, n_pairs: int = 64, patience: int = 2):
        """
        Args:
            every_n_steps: generator steps between checks; 0 turns the alarm off.
            threshold: warn when more than this fraction of the pairs copies through …
            n_pairs: pairs in the fixed batch taken from the datamodule's `panel_batch(n)`.
            patience: … at this many consecutive checks.
        """
        if every_n_steps < 0 or not 0 <= threshold <= 1 or n_pairs < 1 or patience < 1:
            raise ValueError("copy-through alarm: every_n_steps ≥ 0, 0 ≤ threshold ≤ 1, n_pairs ≥ 1 and patience ≥ 1")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.n_pairs = n_pairs
        self.patience = patience
        self._last_step = -1
        self.last_rate: float | None = None
        self.n_checked = 0  # pairs in the fixed batch

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
        if self._count(rate > self.threshold, step):
            since = f" (since step {self._since})" if self._since != step else ""
            rank_zero_warn(
                f"copy-through alarm at step {step}{since}: in {100 * rate:.0f} % of {self.n_checked} fixed pairs "
                f"the mixed image m1 = G(a1, b2) is within x1's reconstruction error of x1's reconstruction "
                f"(threshold {100 * self.threshold:.0f} %): the decoder ignores the class code or the content "
                f"code carries the class. Levers: class supervision, a smaller or noisier content code.")

    @torch.no_grad()
    def rate(self, pl_module, trainer=None) -> float | None:
        """Copy-through rate of the module's EMA generator (or generator) on the fixed batch."""
        b = self._pairs(trainer, pl_module)
        if b is None:
            return None
        self.n_checked = len(b["x1"])
        res = g2g_forward(_eval_generator(pl_module), b["x1"], b["x2"], b["ref1"], b["ref2"], long=False)
        return copy_through(res.m1, b["x1"], reconstruction=res.x1_hat).float().mean().item()


class CollapseAlarm(_PanelPairsAlarm):
    """Says, while a run goes on, when the model draws nothing useful (`collapse.diagnose`: short
    reconstructions no better than a flat image, mixed images that ignore the class or the content code,
    a sprite pose thrown off the image, every image drawn alike).

    Every `every_n_steps` generator steps from `min_step` on, and once at the end of training, it runs
    the EMA generator on the datamodule's fixed panel pairs (of different classes, with their class
    references), logs each signal as `train/collapse_<signal>` and the number of failed signals as
    `collapse` in the progress bar. Every model starts blank (the `g2g` preset on `digits`: a class effect
    of 1.2–3.9 % at step 50, under or just over its 2 % threshold, and 12 % at step 100), so no check runs
    before `min_step`, and a collapse is warned about (one log line) only when `patience` checks in a row
    find it, or at the end of training, whose model is exported. A check is one forward pass of the batch:
    0.4–0.9 s for 64 pairs at 32 px on 2 CPU cores, about 1 % of the time of 500 steps of the `g2g` preset.
    """

    alarm = "collapse alarm"

    def __init__(self, every_n_steps: int = 500, min_step: int = 500, patience: int = 2, n_pairs: int = 64):
        """
        Args:
            every_n_steps: generator steps between checks; 0 turns the alarm off (the final check too).
            min_step: no check before this step (every model is blank at first).
            patience: consecutive collapsed checks before the warning.
            n_pairs: pairs in the fixed batch taken from the datamodule's `panel_batch(n)`.
        """
        if every_n_steps < 0 or min_step < 0 or patience < 1 or n_pairs < 1:
            raise ValueError("collapse alarm: every_n_steps ≥ 0, min_step ≥ 0, patience ≥ 1 and n_pairs ≥ 1")
        self.every_n_steps, self.min_step, self.patience, self.n_pairs = every_n_steps, min_step, patience, n_pairs
        self._last_step = -1
        self.last: Diagnosis | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step < max(self.min_step, 1) or step % self.every_n_steps \
                or step == self._last_step:
            return
        found = self.check(trainer, pl_module)
        if found is None:
            return
        for name, value in found.signals().items():
            pl_module.log(f"train/collapse_{name}", value)
        pl_module.log("collapse", float(len(found.failed)), prog_bar=True, logger=False)
        if self.streak >= self.patience and trainer.is_global_zero:
            log.warning("collapse alarm at step %d (since step %d): %s", step, self._since,
                        found.verdict.removeprefix("collapse: "))

    def on_train_end(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step < max(self.min_step, 1):
            return
        if step == self._last_step and self.streak >= self.patience:
            return  # the check of this step has warned already
        found = self.last if step == self._last_step else self.check(trainer, pl_module)
        if found is not None and found.collapsed and trainer.is_global_zero:
            log.warning("collapse alarm at the end of training (step %d): %s", step,
                        found.verdict.removeprefix("collapse: "))

    def check(self, trainer, pl_module) -> Diagnosis | None:
        """Diagnose the module's EMA generator (or generator) on the fixed batch; None without one."""
        b = self._pairs(trainer, pl_module)
        if b is None:
            return None
        self.last = diagnose(_eval_generator(pl_module), b["x1"], b["x2"], b["ref1"], b["ref2"])
        self._last_step = trainer.global_step
        self._count(self.last.collapsed, self._last_step)
        return self.last


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
