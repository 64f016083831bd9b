"""The LightningModule: builds the networks and the EMA generator; each step is critic update →
generator update → EMA update, with every loss a named, weighted, logged term."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning as L
import torch
from torchvision.utils import make_grid, save_image

from . import losses
from .networks.discriminators import ClassCritic, PatchGAN
from .networks.generator import Generator, GeneratorConfig
from .wiring import G2GResult, g2g_forward

log = logging.getLogger(__name__)
NAN_POLICIES = ("stop", "skip")


class G2GModule(L.LightningModule):
    def __init__(
        self,
        generator: GeneratorConfig = GeneratorConfig(),
        num_classes: int = 0,
        lambda_short: float = 1.0,
        lambda_long: float = 1.0,
        lambda_content_cycle: float = 0.0,
        lambda_class_cycle: float = 0.0,
        lambda_content_l2: float = 0.0,
        lambda_class: float = 0.0,
        lambda_adv: float = 0.0,
        content_noise: float = 0.0,
        gan_loss: str = "lsgan",
        discriminator: str = "basic",
        d_layers: int = 3,
        ndf: int = 64,
        lr_g: float = 1e-3,
        lr_d: float = 1e-3,
        beta1: float = 0.5,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        ema_decay: float = 0.999,
        panel_every: int = 500,
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: str = "stop",
    ):
        """
        Args:
            generator: architecture of E_A, E_B and G (exported with the weights).
            num_classes: classes of the training data (linked from the data); needed by lambda_class.
            lambda_short: L1 short reconstruction x̂ vs x.
            lambda_long: L1 long reconstruction r vs x (the G2G reassembly cycle); 0 skips reassembly
                unless a code-cycle term needs it.
            lambda_content_cycle: ‖a(m) − a‖² (L_cyc,A).
            lambda_class_cycle: ‖b(m1) − b2‖² + ‖b(m2) − b1‖² (L_cyc,B).
            lambda_content_l2: L2 activation penalty on content codes (content bottleneck).
            lambda_class: cross-entropy of a class critic (trained on real labelled images) on mixed images.
            lambda_adv: adversarial term on mixed images (PatchGAN).
            content_noise: std of Gaussian noise added to content codes in training (content bottleneck).
            gan_loss: 'lsgan', 'vanilla', 'hinge' or 'wgangp'.
            discriminator: PatchGAN kind: 'basic', 'n_layers' or 'pixel'.
            d_layers: PatchGAN depth for kind 'n_layers'.
            ndf: PatchGAN base width.
            lr_g / lr_d: Adam learning rates of the generator and of the critics.
            beta1 / beta2: Adam betas (both optimizers).
            weight_decay: Adam weight decay (both optimizers).
            ema_decay: decay of the generator's exponential moving average (used for panels and export).
            panel_every: steps between image panels.
            seed: seed of network initialisation and content-code noise.
            nan_policy: a NaN/Inf loss term or gradient 'stop's training with one line naming it (the
                last checkpoint stays the last good state), or 'skip's the updates of that step from the
                faulty one on: the whole step for a critic fault, the generator update and EMA for a
                generator fault (counted in train/skipped_batches).
        """
        super().__init__()
        if isinstance(generator, dict):
            generator = GeneratorConfig.from_dict(generator)
        if gan_loss not in losses.GAN_LOSSES:
            raise ValueError(f"unknown gan_loss {gan_loss!r}: use one of {', '.join(losses.GAN_LOSSES)}")
        if lambda_class > 0 and num_classes < 2:
            raise ValueError(f"lambda_class > 0 needs a labelled dataset with at least 2 classes (got {num_classes}): "
                             f"use one sub-folder per class, or set model.lambda_class: 0")
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"unknown nan_policy {nan_policy!r}: use one of {', '.join(NAN_POLICIES)}")
        self.save_hyperparameters()
        self.hparams["generator"] = generator.to_dict()  # plain dict: checkpoints load with weights_only
        self.automatic_optimization = False
        torch.manual_seed(seed)
        self.generator = Generator(generator)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.discriminator = PatchGAN(generator.channels, ndf, discriminator, d_layers) if lambda_adv > 0 else None
        if self.discriminator is not None and generator.image_size < self.discriminator.min_size:
            raise ValueError(f"the {discriminator!r} PatchGAN needs images of at least {self.discriminator.min_size} px, "
                             f"got image_size {generator.image_size}: use discriminator 'pixel' or fewer d_layers")
        self.class_critic = ClassCritic(num_classes, generator.channels) if lambda_class > 0 else None
        self.d_loss, self.g_loss = losses.GAN_LOSSES[gan_loss]
        self.needs_long = lambda_long > 0 or lambda_content_cycle > 0 or lambda_class_cycle > 0
        self._panel: dict | None = None
        self.skipped_batches = 0  # steps dropped for non-finite values (nan_policy 'skip'), checkpointed

    # ---- optimisation ----

    def configure_optimizers(self):
        h = self.hparams
        betas = (h.beta1, h.beta2)
        opts = [torch.optim.Adam(self.generator.parameters(), h.lr_g, betas, weight_decay=h.weight_decay)]
        critics = [p for m in (self.discriminator, self.class_critic) if m is not None for p in m.parameters()]
        if critics:
            opts.append(torch.optim.Adam(critics, h.lr_d, betas, weight_decay=h.weight_decay))
        return opts

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)


    def on_train_epoch_start(self) -> None:
        # the data stream is indexed by step: continue it where this run (or the resumed one) stands
        sampler = getattr(self.trainer.datamodule, "sampler", None)
        if sampler is not None:
            sampler.start = self.global_step

    def step_generator(self) -> torch.Generator:
        """Random numbers of a step (content noise, GP mixing) as a pure function of (seed, step): a
        resumed run draws exactly what the uninterrupted run drew, with no RNG state to checkpoint."""
        return torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step)

    def forward_pass(self, batch: dict) -> G2GResult:
        h = self.hparams
        if h.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
        noise = self.step_generator()
        return g2g_forward(self.generator, batch["x1"], batch["x2"], batch["ref1"], batch["ref2"],
                           h.content_noise, noise, long=self.needs_long)

    def critic_terms(self, batch: dict, res: G2GResult) -> dict[str, torch.Tensor]:
        """Named, unweighted critic losses on real images and detached mixed images."""
        terms = {}
        real = torch.cat([batch["x1"], batch["x2"]])
        if self.discriminator is not None:
            fake = torch.cat([res.m1, res.m2]).detach()
            terms["d_adv"] = self.d_loss(self.discriminator(real), self.discriminator(fake))
            if self.hparams.gan_loss == "wgangp":
                terms["d_gp"] = 10.0 * losses.gradient_penalty(self.discriminator, real, fake,
                                                                self.step_generator())
        if self.class_critic is not None:
            labels = torch.cat([batch["y1"], batch["y2"]])
            terms["d_class"] = losses.class_consistency(self.class_critic(real), labels)
        return terms

    def generator_terms(self, batch: dict, res: G2GResult) -> dict[str, torch.Tensor]:
        """Weighted generator losses by name (only the active ones)."""
        h = self.hparams
        x1, x2 = batch["x1"], batch["x2"]
        terms = {}
        if h.lambda_short:
            terms["short"] = h.lambda_short * (losses.l1(res.x1_hat, x1) + losses.l1(res.x2_hat, x2))
        if h.lambda_long:
            terms["long"] = h.lambda_long * (losses.l1(res.r1, x1) + losses.l1(res.r2, x2))
        if h.lambda_content_cycle:
            terms["content_cycle"] = h.lambda_content_cycle * (
                losses.code_cycle(res.a_m1, res.a1) + losses.code_cycle(res.a_m2, res.a2))
        if h.lambda_class_cycle:
            terms["class_cycle"] = h.lambda_class_cycle * (
                losses.code_cycle(res.b_m1, res.b2) + losses.code_cycle(res.b_m2, res.b1))
        if h.lambda_content_l2:
            terms["content_l2"] = h.lambda_content_l2 * (
                losses.activation_l2(res.a1) + losses.activation_l2(res.a2))
        if self.class_critic is not None:
            logits = self.class_critic(torch.cat([res.m1, res.m2]))
            terms["class"] = h.lambda_class * losses.class_consistency(
                logits, torch.cat([batch["y2"], batch["y1"]]))
        if self.discriminator is not None:
            terms["adv"] = h.lambda_adv * self.g_loss(self.discriminator(torch.cat([res.m1, res.m2])))
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opts = self.optimizers()
        opt_g, opt_d = (opts, None) if not isinstance(opts, list) else (opts + [None])[:2]
        # 1. the G2G pass: disassembly, mixing, short reconstruction, reassembly, long reconstruction
        res = self.forward_pass(batch)
        # 2. critic update on real images and the (detached) mixed images
        logs = {}
        if opt_d is not None:
            d_terms = self.critic_terms(batch, res)
            d_total = sum(d_terms.values())
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_total)
            if fault := self.nonfinite(d_terms, opt_d):
                return self.skip_step(opt_g, opt_d, fault)
            # the raw optimizer: Lightning counts every wrapped step in global_step, and max_steps,
            # intervals and the data stream should count generator steps only
            opt_d.optimizer.step()
            logs.update({f"train/{k}": v.detach() for k, v in d_terms.items()})
        # 3. generator update (critics are frozen for this backward pass)
        for m in (self.discriminator, self.class_critic):
            if m is not None:
                m.requires_grad_(False)
        g_terms = self.generator_terms(batch, res)
        g_total = sum(g_terms.values())
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_total)
        for m in (self.discriminator, self.class_critic):
            if m is not None:
                m.requires_grad_(True)
        if fault := self.nonfinite(g_terms, opt_g):
            return self.skip_step(opt_g, opt_d, fault)
        opt_g.step()
        # 4. EMA of the generator, with a warm-up so short runs are not dominated by the initial weights
        self.update_ema()
        logs.update({f"train/{k}": v.detach() for k, v in g_terms.items()})
        logs["train/loss_g"] = g_total.detach()
        if self.hparams.nan_policy == "skip":
            logs["train/skipped_batches"] = float(self.skipped_batches)
        self.log_dict(logs, prog_bar=False)
        self.log("loss", g_total.detach(), prog_bar=True, logger=False)

    # ---- numerical faults ----

    def nonfinite(self, terms: dict[str, torch.Tensor], opt) -> str | None:
        """None when every loss term and every gradient of `opt` is finite (one device sync); else what
        is not, by name and step. With nan_policy 'stop' that is raised as one line."""
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        checked = [t.detach().float().reshape(1) for t in terms.values()]
        checked.append(torch.nn.utils.get_total_norm(grads, norm_type=float("inf")).reshape(1).float())
        if bool(torch.cat(checked).isfinite().all()):
            return None
        bad = [f"loss term {k!r} is {v.item()}" for k, v in terms.items() if not torch.isfinite(v).all()]
        bad += [f"gradient of {n} is not finite" for n, p in self.named_parameters()
                if p.grad is not None and not torch.isfinite(p.grad).all()]
        fault = f"{(bad or ['a value'])[0]} at step {self.global_step + 1}"
        if self.hparams.nan_policy == "stop":
            raise FloatingPointError(
                f"{fault}; training stopped without saving this step (the last checkpoint is the last good "
                f"state): lower lr_g/lr_d and resume from it with --ckpt_path, or set model.nan_policy: skip")
        return fault

    def skip_step(self, opt_g, opt_d, fault: str) -> None:
        """Drop the rest of this step's updates but still count the step (an optimizer step with no
        gradients is a no-op that advances global_step): the data stream and the step-seeded noise stay
        aligned with the step, so resuming stays exact."""
        for opt in (opt_g, opt_d):
            if opt is not None:
                opt.zero_grad(set_to_none=True)
        opt_g.step()
        self.skipped_batches += 1
        log.warning("skipped the batch of step %d: %s (%d skipped so far)", self.global_step, fault,
                    self.skipped_batches)
        self.log("train/skipped_batches", float(self.skipped_batches))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skipped_batches"] = self.skipped_batches

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_batches = int(checkpoint.get("skipped_batches", 0))

    @torch.no_grad()
    def update_ema(self) -> None:
        step = self.global_step
        decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
        ema = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema, list(self.generator.parameters()), 1.0 - decay)

    # ---- image panels from a fixed batch ----

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
        res = g2g_forward(self.generator_ema, b["x1"], b["x2"], b["ref1"], b["ref2"])
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
