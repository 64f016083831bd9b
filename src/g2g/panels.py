"""Image panels of the EMA generator on a fixed batch of the data module, every `every_n_steps` steps
and always at the end of training, to TensorBoard and as PNG files under the log directory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from torchvision.utils import make_grid, save_image

from .wiring import g2g_forward


class PanelLogger(Callback):
    """Panels of the EMA generator, rows: x1, x2, mixed m1, m2, long reconstructions r1, r2."""

    def __init__(self, every_n_steps: int = 500):
        """
        Args:
            every_n_steps: generator steps between panels (and one after the first step); 0: only the
                panel at the end of training.
        """
        if every_n_steps < 0:
            raise ValueError(f"panels.every_n_steps must be >= 0 (0: only the final panel), got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._batch: dict | None = None  # the datamodule's panel batch, taken at the first panel

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and (step % self.every_n_steps == 0 or step == 1):
            self.log_panel(trainer, pl_module, step)

    def on_train_end(self, trainer, pl_module) -> None:
        self.log_panel(trainer, pl_module, trainer.global_step)

    @torch.no_grad()
    def panel(self, trainer, pl_module) -> torch.Tensor:
        """Image grid, rows: x1, x2, m1, m2, r1, r2 of the EMA generator."""
        if self._batch is None:
            self._batch = trainer.datamodule.panel_batch()
        b = {k: v.to(pl_module.device) for k, v in self._batch.items()}
        gen = pl_module.generator_ema
        training = gen.training
        gen.eval()  # batch-norm statistics of training (arch lord), not of the panel batch
        res = g2g_forward(gen, b["x1"], b["x2"], b["ref1"], b["ref2"])
        gen.train(training)
        rows = [b["x1"], b["x2"], res.m1, res.m2, res.r1, res.r2]
        return make_grid(torch.cat(rows).cpu(), nrow=b["x1"].shape[0], normalize=True, value_range=(-1, 1))

    def log_panel(self, trainer, pl_module, step: int) -> None:
        if getattr(trainer, "datamodule", None) is None:
            return
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask, or rank 0 waits for ever
        if not trainer.is_global_zero:
            return
        grid = self.panel(trainer, pl_module)
        experiment: Any = getattr(pl_module.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("panel", grid, step)
        if log_dir:
            out = Path(log_dir) / "panels"
            out.mkdir(parents=True, exist_ok=True)
            save_image(grid, out / f"step_{step:07d}.png")
