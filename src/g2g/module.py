"""The LightningModule: builds the networks and the EMA generator; each step is critic update →
generator update → EMA update, with every loss a named, weighted, logged term."""
from __future__ import annotations

import copy
import functools
import logging
import math
import operator
from typing import Any

import lightning as L
import torch

from . import losses
from .hparams import CriticOptions, FrozenNets, LossWeights, OptimOptions, Schedule, check_together
from .networks import sprite
from .networks.discriminators import ClassCritic, PatchGAN, ProjectionDiscriminator
from .networks.funit_checkpoint import init_from_funit_checkpoint
from .networks.generator import ArchConfig, Generator, config_from_dict
from .networks.identity import IdentityNet
from .networks.perceptual import VGGPerceptual
from .objective import G2GObjective
from .optim import clip_gradients, make_optimizer, nonfinite_fault, run_progress, tail_factor
from .wiring import G2GResult, g2g_forward

log = logging.getLogger(__name__)
FROZEN = (IdentityNet, VGGPerceptual)  # pretrained networks used as they are


def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the named terms, in their order."""
    return functools.reduce(operator.add, terms.values())


class G2GModule(G2GObjective, L.LightningModule):
    grad_norm_mean: torch.Tensor  # buffer of clip_spike

    def __init__(
        self,
        generator: dict[str, Any] | None = None,
        num_classes: int = 0,
        loss: LossWeights = LossWeights(),
        critic: CriticOptions = CriticOptions(),
        optim: OptimOptions = OptimOptions(),
        schedule: Schedule = Schedule(),
        frozen: FrozenNets = FrozenNets(),
        init_from: str | None = None,
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: str = "stop",
    ):
        """
        Args:
            generator: the architecture of E_A, E_B and G (exported with the weights): `arch` (g2g, funit,
                lord or sprite) and that architecture's keys (networks/archs.py); an ArchConfig also works.
            num_classes: classes of the training data (linked from the data); needed by the weights that
                use labels and by the projection discriminator.
            loss: weights of the loss terms (hparams.LossWeights).
            critic: the discriminator and its loss (hparams.CriticOptions).
            optim: optimizers, gradient clipping, EMA (hparams.OptimOptions).
            schedule: learning-rate tail, start of the reassembly pass, identity warm-up (hparams.Schedule).
            frozen: pretrained VGG16 / VGGFace2 networks from the user's files (hparams.FrozenNets).
            init_from: NVIDIA FUNIT checkpoint to start from (arch funit): its 'gen' initialises the
                generator, its 'gen_test' the EMA generator (then without the EMA warm-up).
            seed: seed of network initialisation and content-code noise.
            channels_last: channels-last memory format for the networks and batches.
            nan_policy: a NaN/Inf loss term or gradient 'stop's training with one line naming it (the
                last checkpoint stays the last good state), or 'skip's the updates of that step from the
                faulty one on (counted in train/skipped_batches).
        """
        super().__init__()
        config = generator if isinstance(generator, ArchConfig) else config_from_dict(generator or {})
        self.loss, self.critic, self.schedule = LossWeights.of(loss), CriticOptions.of(critic), Schedule.of(schedule)
        self.optim, self.frozen = OptimOptions.of(optim), FrozenNets.of(frozen)
        check_together(self.loss, self.critic, config.arch, num_classes, init_from, nan_policy)
        self.save_hyperparameters()  # plain dicts: checkpoints load with weights_only
        self.hparams.update(generator=config.to_dict(), loss=self.loss.to_dict(), critic=self.critic.to_dict(),
                            optim=self.optim.to_dict(), schedule=self.schedule.to_dict(),
                            frozen=self.frozen.to_dict())
        self.automatic_optimization = False
        self.identity = self.load_identity(config)
        torch.manual_seed(seed)
        self.build_generators(config, init_from)
        self.build_critics(config, num_classes)
        self.build_running_statistics(config, num_classes)
        self.skipped_batches = 0  # steps dropped for non-finite values (nan_policy 'skip'), checkpointed

    def load_identity(self, config: ArchConfig) -> IdentityNet | None:
        """The frozen VGGFace2 network, when the class encoder or the identity loss uses it."""
        if config.class_encoder != "vggface2" and self.loss.lambda_identity == 0:
            return None
        if self.frozen.identity_weights is None:
            raise ValueError("class_encoder 'vggface2' and lambda_identity need model.frozen.identity_weights: "
                             "the VGGFace2 resnet50_ft PyTorch state dict (resnet50_ft_dag.pth)")
        return IdentityNet.from_file(self.frozen.identity_weights)

    def build_generators(self, config: ArchConfig, init_from: str | None) -> None:
        """The generator, its EMA copy and the frozen networks, which are never trained, always in eval
        mode, left out of training checkpoints (on_save_checkpoint) and shared by both generators."""
        self.generator = Generator(config, class_encoder=self.identity)
        self.perceptual = (VGGPerceptual(self.frozen.perceptual_weights, self.frozen.perceptual_layer)
                           if self.frozen.perceptual == "vgg16" else None)
        frozen = {id(m): m for m in self.generator.modules() if isinstance(m, FROZEN)}
        self.generator_ema = copy.deepcopy(self.generator, memo=frozen).requires_grad_(False)
        if init_from is not None:  # FUNIT's own resume: the trained generator and its EMA copy
            init_from_funit_checkpoint(self.generator, init_from, "gen")
            init_from_funit_checkpoint(self.generator_ema, init_from, "gen_test")

    def build_critics(self, config: ArchConfig, num_classes: int) -> None:
        """The networks the critic step trains, and the class-code head; None where no weight needs them."""
        c, w = self.critic, self.loss
        self.discriminator = None
        if w.needs_critic and c.discriminator == "projection":
            self.discriminator = ProjectionDiscriminator(num_classes, config.channels, c.ndf, c.d_res_blocks)
        elif w.needs_critic:
            self.discriminator = PatchGAN(config.channels, c.ndf, c.discriminator, c.d_layers)
            if config.image_size < self.discriminator.min_size:
                raise ValueError(f"the {c.discriminator!r} PatchGAN needs images of at least "
                                 f"{self.discriminator.min_size} px, got image_size {config.image_size}: "
                                 "use discriminator 'pixel' or fewer d_layers")
        self.class_critic = ClassCritic(num_classes, config.channels) if w.lambda_class > 0 else None
        self.class_head = torch.nn.Linear(config.class_dim, num_classes) if w.lambda_class_code > 0 else None
        self.content_probe = (torch.nn.Linear(math.prod(config.content_shape), num_classes)
                              if w.lambda_content_probe > 0 else None)
        self.d_loss, self.g_loss = losses.GAN_LOSSES[c.gan_loss]
        self.r1_penalty = losses.r1_penalty_funit if c.discriminator == "projection" else losses.r1_penalty

    def build_running_statistics(self, config: ArchConfig, num_classes: int) -> None:
        """Buffers, checkpointed with the module, so a resumed run continues them."""
        if self.loss.lambda_pose_moments > 0:  # running mean pose of each class
            self.register_buffer("pose_means", torch.zeros(num_classes, sprite.POSE_GEOMETRY))
            self.register_buffer("pose_seen", torch.zeros(num_classes, dtype=torch.bool))
        if self.loss.lambda_class_centre > 0:  # running mean class code of each class
            self.register_buffer("class_centres", torch.zeros(num_classes, config.class_dim))
            self.register_buffer("class_seen", torch.zeros(num_classes, dtype=torch.bool))
        if self.loss.lambda_content_match > 0:  # the content codes of recent steps' references, by class
            bank = self.loss.content_match_bank
            self.register_buffer("match_codes", torch.zeros(bank, math.prod(config.content_shape)))
            self.register_buffer("match_labels", torch.full((bank,), -1, dtype=torch.long))
            self.register_buffer("match_next", torch.zeros((), dtype=torch.long))
        if self.optim.clip_spike > 0:  # running mean of the generator gradient's capped norm; 0 until the first step
            self.register_buffer("grad_norm_mean", torch.zeros(()))

    # ---- optimisation ----

    def configure_optimizers(self):
        o = self.optim
        trained = [m for m in (self.generator, self.class_head) if m is not None]
        opts = [make_optimizer(o, [p for m in trained for p in m.parameters() if p.requires_grad], o.lr_g)]
        critics = [p for m in self.critics() for p in m.parameters()]
        if critics:
            opts.append(make_optimizer(o, critics, o.lr_d))
        return opts

    def critics(self) -> list[torch.nn.Module]:
        """The networks the critic step trains (and the generator step holds fixed)."""
        return [m for m in (self.discriminator, self.class_critic, self.content_probe) if m is not None]

    # ---- frozen networks stay out of training checkpoints: they come from the user's files ----

    def _frozen_keys(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name, m in self.named_modules(remove_duplicate=False) if isinstance(m, FROZEN))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        prefixes = self._frozen_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(prefixes)}
        checkpoint["skipped_batches"] = self.skipped_batches  # NaN/Inf batches skipped (nan_policy: skip)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        prefixes = self._frozen_keys()
        frozen = {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **frozen}
        self.skipped_batches = int(checkpoint.get("skipped_batches", 0))

    def on_fit_start(self) -> None:
        pairs = getattr(getattr(self._trainer, "datamodule", None), "train_pairs", None)
        # options that read other images of each image's class need supervised (labelled) pairs
        for option, on, off in (("model.generator.content_centre", self.generator.centred, "false"),
                                ("model.loss.lambda_content_contrast", self.loss.lambda_content_contrast > 0, "0"),
                                ("model.loss.lambda_content_match", self.loss.lambda_content_match > 0, "0")):
            if on and pairs is not None and not pairs().supervised:
                raise ValueError(f"{option} reads other images of each image's class: it needs labelled data and "
                                 f"data.supervised: true (or set it to {off})")
        if self.hparams["channels_last"]:
            self.to(memory_format=torch.channels_last)

    def step_generator(self, stream: int = 0) -> torch.Generator:
        """Random numbers of a step (content noise, GP mixing; stream 1: equivariance transforms) as a pure
        function of (seed, step, stream): a resumed run draws exactly what the uninterrupted run drew, with
        no RNG state to checkpoint."""
        return torch.Generator().manual_seed(self.hparams["seed"] * 1_000_003 + self.global_step + stream * 10**12)

    def forward_pass(self, batch: dict) -> G2GResult:
        if self.hparams["channels_last"]:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
        noise = self.step_generator()
        return g2g_forward(self.generator, batch["x1"], batch["x2"], batch["ref1"], batch["ref2"],
                           self.loss.content_noise, noise, long=self.long_active(), short=self.loss.needs_short,
                           rerender=self.loss.lambda_rerender > 0,
                           content_augment=self.loss.content_augment if self.training else 0.0)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opts: Any = self.optimizers()
        opt_g, opt_d = (opts, None) if not isinstance(opts, list) else (opts + [None])[:2]
        # 1. the G2G pass: disassembly, mixing, short reconstruction, reassembly, long reconstruction
        res = self.forward_pass(batch)
        # 2. critic update on real images and the (detached) mixed images
        logs: dict[str, Any] = {}
        if opt_d is not None:
            d_terms = self.critic_terms(batch, res)
            d_total = total(d_terms)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_total)
            if fault := self.nonfinite(d_terms, opt_d):
                return self.skip_step(opt_g, opt_d, fault)
            # the raw optimizer: Lightning counts every wrapped step in global_step, and max_steps,
            # intervals and the data stream should count generator steps only
            opt_d.optimizer.step()
            logs.update({f"train/{k}": v.detach() for k, v in d_terms.items()})
        # 3. generator update (critics are frozen for this backward pass)
        for m in self.critics():
            m.requires_grad_(False)
        g_terms = self.generator_terms(batch, res)
        if self.loss.lambda_identity:  # the weight of this step (the generator's step advances global_step)
            logs["train/identity_weight"] = self.identity_weight()
        g_total = total(g_terms)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_total)
        for m in self.critics():
            m.requires_grad_(True)
        if fault := self.nonfinite(g_terms, opt_g):
            return self.skip_step(opt_g, opt_d, fault)
        if self.optim.clip_grad_norm > 0 or self.optim.clip_spike > 0:
            grads = [p.grad for group in opt_g.param_groups for p in group["params"] if p.grad is not None]
            running = self.grad_norm_mean if self.optim.clip_spike > 0 else None
            logs["train/grad_norm_g"], new_running = clip_gradients(grads, self.optim.clip_grad_norm,
                                                                    self.optim.clip_spike, running)
            if running is not None and new_running is not None:
                running.copy_(new_running)
        if self.schedule.lr_tail > 0:
            logs["train/lr_factor"] = self.set_learning_rates(opt_g, opt_d)
        opt_g.step()
        # 4. EMA of the generator, with a warm-up so short runs are not dominated by the initial weights
        self.update_ema()
        logs.update({f"train/{k}": v.detach() for k, v in g_terms.items()})
        logs["train/loss_g"] = g_total.detach()
        if self.hparams["nan_policy"] == "skip":
            logs["train/skipped_batches"] = float(self.skipped_batches)
        self.log_dict(logs, prog_bar=False)
        self.log("loss", g_total.detach(), prog_bar=True, logger=False)

    # ---- numerical faults ----

    def nonfinite(self, terms: dict[str, torch.Tensor], opt) -> str | None:
        """`optim.nonfinite_fault` of this step; with nan_policy 'stop' it is raised as one line."""
        fault = nonfinite_fault(terms, opt, self.named_parameters(), self.global_step + 1)
        if fault is not None and self.hparams["nan_policy"] == "stop":
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

    def set_learning_rates(self, opt_g, opt_d) -> float:
        """Both optimizers' learning rates for this step under lr_tail; returns the factor. The critic's
        step of this training step ran before; it takes the new rate from the next step on."""
        factor = tail_factor(run_progress(self.trainer, self.global_step), self.schedule.lr_tail)
        for opt, lr in ((opt_g, self.optim.lr_g), (opt_d, self.optim.lr_d)):
            for group in ([] if opt is None else opt.param_groups):
                group["lr"] = lr * factor
        return factor

    @torch.no_grad()
    def update_ema(self) -> None:
        step = self.global_step
        decay = self.optim.ema_decay
        if self.hparams["init_from"] is None:  # an EMA loaded from a checkpoint needs no warm-up
            decay = min(decay, (1 + step) / (10 + step))
        # frozen networks are shared, not averaged; buffers (batch-norm statistics of arch lord) are copied
        pairs = [(e, p) for e, p in zip(self.generator_ema.parameters(), self.generator.parameters()) if e is not p]
        if pairs:
            torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1.0 - decay)
        buffers = [(e, b) for e, b in zip(self.generator_ema.buffers(), self.generator.buffers()) if e is not b]
        if buffers:
            torch._foreach_copy_([e for e, _ in buffers], [b for _, b in buffers])
