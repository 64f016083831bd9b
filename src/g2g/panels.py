"""Image panels of G2GModule from a fixed batch of the data module: every `panel_every` steps and at the
end, to TensorBoard and as PNG files under the log directory. A mixin: the module owns the EMA generator,
the trainer and the hyper-parameters these methods read."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from .wiring import g2g_forward


class PanelLogging:
    """Panels of the EMA generator, rows: x1, x2, m1, m2, r1, r2."""

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        step = self.global_step
        if self.hparams.panel_every and (step % self.hparams.panel_every == 0 or step == 1):
            self.log_panel(step)

    def on_train_end(self) -> None:
        self.log_panel(self.global_step)

    @torch.no_grad()
    def panel(self) -> torch.Tensor:
        """Image grid, rows: x1, x2, mixed m1, m2, long reconstructions r1, r2 (EMA generator)."""
        if self._panel is None:
            self._panel = self.trainer.datamodule.panel_batch()
        b = {k: v.to(self.device) for k, v in self._panel.items()}
        training = self.generator_ema.training
        self.generator_ema.eval()  # batch-norm statistics of training (arch lord), not of the panel batch
        res = g2g_forward(self.generator_ema, b["x1"], b["x2"], b["ref1"], b["ref2"])
        self.generator_ema.train(training)
        rows = [b["x1"], b["x2"], res.m1, res.m2, res.r1, res.r2]
        return make_grid(torch.cat(rows).cpu(), nrow=b["x1"].shape[0], normalize=True, value_range=(-1, 1))

    def log_panel(self, step: int) -> None:
        if self.trainer.datamodule is None:
            return
        log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask, or rank 0 waits for ever
        if not self.trainer.is_global_zero:
            return
        grid = self.panel()
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("panel", grid, step)
        if log_dir:
            out = Path(log_dir) / "panels"
            out.mkdir(parents=True, exist_ok=True)
            save_image(grid, out / f"step_{step:07d}.png")
