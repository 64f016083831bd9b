"""The LightningModule: builds the networks and the EMA generator; each step is critic update →
generator update → EMA update, with every loss a named, weighted, logged term."""
from __future__ import annotations

import copy
import logging
import math

import lightning as L
import torch

from . import losses
from .networks import sprite
from .networks.discriminators import ClassCritic, PatchGAN, ProjectionDiscriminator
from .networks.funit import init_from_funit_checkpoint
from .networks.generator import Generator, GeneratorConfig
from .networks.identity import IdentityNet
from .networks.perceptual import VGGPerceptual
from .objective import G2GObjective
from .optim import clip_gradients, make_optimizer, nonfinite_fault, run_progress, tail_factor
from .options import DISCRIMINATORS, NAN_POLICIES, check_options
from .panels import PanelLogging
from .wiring import G2GResult, g2g_forward

log = logging.getLogger(__name__)
FROZEN = (IdentityNet, VGGPerceptual)  # pretrained networks used as they are


class G2GModule(G2GObjective, PanelLogging, L.LightningModule):
    def __init__(
        self,
        generator: GeneratorConfig = GeneratorConfig(),
        num_classes: int = 0,
        lambda_short: float = 1.0,
        lambda_long: float = 1.0,
        lambda_rerender: float = 0.0,
        lambda_content_cycle: float = 0.0,
        lambda_class_cycle: float = 0.0,
        lambda_content_l2: float = 0.0,
        lambda_class: float = 0.0,
        lambda_class_code: float = 0.0,
        lambda_content_probe: float = 0.0,
        lambda_equivariance: float = 0.0,
        lambda_pose_moments: float = 0.0,
        pose_moment_rate: float = 0.02,
        lambda_class_centre: float = 0.0,
        lambda_identity: float = 0.0,
        lambda_adv: float = 0.0,
        lambda_adv_short: float = 0.0,
        lambda_fm_mixed: float = 0.0,
        lambda_fm_short: float = 0.0,
        lambda_fm_long: float = 0.0,
        lambda_fm_mixed_long: float = 0.0,
        lambda_d_adv: float = 1.0,
        lambda_r1: float = 0.0,
        content_noise: float = 0.0,
        perceptual: str = "none",
        perceptual_weights: str | None = None,
        perceptual_layer: str = "relu2_2",
        identity_weights: str | None = None,
        identity_warmup_start: int = 0,
        identity_warmup_steps: int = 0,
        gan_loss: str = "lsgan",
        discriminator: str = "basic",
        d_layers: int = 3,
        d_res_blocks: int = 10,
        ndf: int = 64,
        optimizer: str = "adam",
        lr_g: float = 1e-3,
        lr_d: float = 1e-3,
        beta1: float = 0.5,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        lr_tail: float = 0.0,
        long_start: float = 0.0,
        clip_grad_norm: float = 0.0,
        clip_spike: float = 0.0,
        ema_decay: float = 0.999,
        init_from: str | None = None,
        panel_every: int = 500,
        seed: int = 0,
        channels_last: bool = False,
        nan_policy: str = "stop",
    ):
        """
        Args:
            generator: architecture of E_A, E_B and G (exported with the weights).
            num_classes: classes of the training data (linked from the data); needed by lambda_class and
                the projection discriminator.
            lambda_short: short reconstruction x̂ vs x (L1 of pixels, or of VGG features: `perceptual`).
            lambda_long: long reconstruction r vs x (the G2G reassembly cycle; distance as lambda_short); 0
                skips reassembly unless another term needs it.
            lambda_rerender: L1 of q = G(a(m1), b2) against the detached m1 = G(a1, b2) (and m2): the content
                code read back from a mixed image redraws it; unlike the content cycle, blind to what the
                image does not show (the angle of a circle). Trained with the long reconstruction.
            lambda_content_cycle: ‖a(m) − a‖² (L_cyc,A).
            lambda_class_cycle: ‖b(m1) − b2‖² + ‖b(m2) − b1‖² (L_cyc,B).
            lambda_content_l2: L2 activation penalty on content codes (content bottleneck).
            lambda_class: cross-entropy of a class critic (trained on real labelled images) on mixed images.
            lambda_class_code: cross-entropy of a linear head on the class codes b1, b2 against the labels
                (trained with the generator): class codes that tell the classes apart from the first steps.
            lambda_content_probe: a linear probe (trained with the critics) predicts the class from the
                content codes a1, a2; the content encoder is pushed towards the probe's confusion (uniform
                prediction), so the content code's class statistics match across classes.
            lambda_equivariance: arch sprite: the pose read from a randomly turned, scaled and shifted copy
                of x1 and x2 must be their pose moved by the same transform (squared error in pixels,
                `sprite.pose_error_px`). Gives every class's pose the same units and sign; needs no labels.
            lambda_pose_moments: arch sprite, labels: half the squared pixel distance of each class's
                running mean pose from the mean over classes (`sprite.pose_moments`), so every class's
                template is drawn in the same frame (same centre, size and upright).
            pose_moment_rate: weight of a batch in those running means. The means' noise (from the content of
                the one or two images of a class in a batch) becomes each class's pose offset in swaps: a
                smaller rate averages longer; the pull on the poses scales with rate × lambda_pose_moments.
            lambda_class_centre: labels: mean squared distance of the class codes b1, b2 from their class's
                running centre (`losses.class_centre`): what varies within a class is content, so this
                drives content out of the class codes.
            lambda_identity: identity loss ‖E_ID(x2) − E_ID(m1)‖₁ + ‖E_ID(x1) − E_ID(m2)‖₁ with the frozen
                VGGFace2 network (needs identity_weights), reached after the warm-up below.
            lambda_adv: adversarial term on mixed images m1, m2.
            lambda_adv_short: adversarial term on short reconstructions x̂1, x̂2.
            lambda_fm_mixed: feature matching (projection discriminator): m1 vs x2, m2 vs x1 (FUNIT's l_m_rec).
            lambda_fm_short: feature matching x̂ vs x (FUNIT's l_c_rec).
            lambda_fm_long: feature matching r vs x.
            lambda_fm_mixed_long: feature matching r1 vs m2, r2 vs m1 (each long reconstruction against the
                mixed image it took its class code from; the mixed side is the fixed target).
            lambda_d_adv: ζ, weight of the critic's real/fake term (itself the mean of the two).
            lambda_r1: R1 penalty on real images (projection discriminator: FUNIT's scale,
                `losses.r1_penalty_funit`, so FUNIT's weight 10 means the same; PatchGAN: ½‖∇D‖²).
            content_noise: std of Gaussian noise added to content codes in training (content bottleneck).
            perceptual: 'none' (pixel L1) or 'vgg16' (L1 of frozen VGG16 features) for short and long
                reconstructions.
            perceptual_weights: VGG16 state dict file; None reads torchvision's file from the torch hub cache.
            perceptual_layer: VGG16 layer whose features are compared (only the layers up to it are run).
            identity_weights: VGGFace2 `resnet50_ft` state dict, for generator.class_encoder 'vggface2' and
                lambda_identity.
            identity_warmup_start / identity_warmup_steps: the identity weight is 0 for the first
                `start` steps, then rises linearly to lambda_identity over `steps` steps.
            gan_loss: 'lsgan', 'vanilla', 'hinge' or 'wgangp'.
            discriminator: PatchGAN kind 'basic', 'n_layers' or 'pixel', or 'projection' (FUNIT's multi-class
                projection discriminator, scoring each image as the class it should show).
            d_layers: PatchGAN depth for kind 'n_layers'.
            d_res_blocks: residual blocks of the projection discriminator (even).
            ndf: discriminator base width.
            optimizer: 'adam' or 'rmsprop' (FUNIT), for the generator and the critics alike.
            lr_g / lr_d: learning rates of the generator and of the critics.
            beta1 / beta2: Adam betas (both optimizers).
            weight_decay: weight decay (both optimizers).
            lr_tail: the last fraction of the run over which both learning rates fall along a half cosine to 0
                (`tail_factor`): of max_steps, or of max_time when only that is set (0: constant rates).
            long_start: fraction of the run (as lr_tail counts it) before the reassembly pass is trained.
            clip_grad_norm: largest L2 norm of the generator update's whole gradient (0: no clipping); the
                norm before clipping is logged as train/grad_norm_g. Adam with beta1 0.5 turns a single
                gradient spike into a step many times its usual size, which can knock a sprite model's pose
                off the image for good.
            clip_spike: > 0 also caps that norm at this multiple of its running mean (`clip_gradients`; the
                mean of the capped norms over about the last 100 steps, checkpointed). Late in training the
                gradients shrink far below any fixed cap, so only a cap relative to their recent size keeps
                a single spike from becoming an Adam step many times the usual size.
            ema_decay: decay of the generator's exponential moving average (used for panels and export).
            init_from: NVIDIA FUNIT checkpoint to start from (arch funit): its 'gen' initialises the
                generator, its 'gen_test' the EMA generator (then without the EMA warm-up).
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
        check_options(generator, locals())
        self.save_hyperparameters()
        self.hparams["generator"] = generator.to_dict()  # plain dict: checkpoints load with weights_only
        self.automatic_optimization = False
        # frozen networks, loaded from the user's files: never trained, always in eval mode, left out of
        # training checkpoints (on_save_checkpoint) and shared by the generator and its EMA copy
        self.identity = None
        if generator.class_encoder == "vggface2" or lambda_identity > 0:
            if identity_weights is None:
                raise ValueError("class_encoder 'vggface2' and lambda_identity need model.identity_weights: the "
                                 "VGGFace2 resnet50_ft PyTorch state dict (resnet50_ft_dag.pth)")
            self.identity = IdentityNet.from_file(identity_weights)
        torch.manual_seed(seed)
        self.generator = Generator(generator, class_encoder=self.identity)
        self.perceptual = VGGPerceptual(perceptual_weights, perceptual_layer) if perceptual == "vgg16" else None
        frozen = {id(m): m for m in self.generator.modules() if isinstance(m, FROZEN)}
        self.generator_ema = copy.deepcopy(self.generator, memo=frozen).requires_grad_(False)
        if init_from is not None:  # FUNIT's own resume: the trained generator and its EMA copy
            init_from_funit_checkpoint(self.generator, init_from, "gen")
            init_from_funit_checkpoint(self.generator_ema, init_from, "gen_test")
        self.needs_d = any(v > 0 for v in (lambda_adv, lambda_adv_short, lambda_fm_mixed, lambda_fm_short,
                                           lambda_fm_long, lambda_fm_mixed_long))
        self.discriminator = None
        if self.needs_d and discriminator == "projection":
            self.discriminator = ProjectionDiscriminator(num_classes, generator.channels, ndf, d_res_blocks)
        elif self.needs_d:
            self.discriminator = PatchGAN(generator.channels, ndf, discriminator, d_layers)
            if generator.image_size < self.discriminator.min_size:
                raise ValueError(f"the {discriminator!r} PatchGAN needs images of at least "
                                 f"{self.discriminator.min_size} px, got image_size {generator.image_size}: "
                                 "use discriminator 'pixel' or fewer d_layers")
        self.class_critic = ClassCritic(num_classes, generator.channels) if lambda_class > 0 else None
        self.class_head = torch.nn.Linear(generator.class_dim, num_classes) if lambda_class_code > 0 else None
        self.content_probe = (torch.nn.Linear(math.prod(generator.content_shape), num_classes)
                              if lambda_content_probe > 0 else None)
        if lambda_pose_moments > 0:  # running mean pose of each class, checkpointed with the module
            self.register_buffer("pose_means", torch.zeros(num_classes, sprite.POSE_GEOMETRY))
            self.register_buffer("pose_seen", torch.zeros(num_classes, dtype=torch.bool))
        if lambda_class_centre > 0:  # running mean class code of each class, checkpointed with the module
            self.register_buffer("class_centres", torch.zeros(num_classes, generator.class_dim))
            self.register_buffer("class_seen", torch.zeros(num_classes, dtype=torch.bool))
        self.d_loss, self.g_loss = losses.GAN_LOSSES[gan_loss]
        self.r1_penalty = losses.r1_penalty_funit if discriminator == "projection" else losses.r1_penalty
        self.needs_short = any(v > 0 for v in (lambda_short, lambda_adv_short, lambda_fm_short))
        self.needs_long = any(v > 0 for v in (lambda_long, lambda_rerender, lambda_content_cycle, lambda_class_cycle,
                                              lambda_fm_long, lambda_fm_mixed_long))
        if clip_spike > 0:  # running mean of the generator gradient's capped norm; 0 until the first step
            self.register_buffer("grad_norm_mean", torch.zeros(()))
        self._panel: dict | None = None
        self.skipped_batches = 0  # steps dropped for non-finite values (nan_policy 'skip'), checkpointed

    # ---- optimisation ----

    def configure_optimizers(self):
        h = self.hparams

        trained = [m for m in (self.generator, self.class_head) if m is not None]
        opts = [make_optimizer(h, [p for m in trained for p in m.parameters() if p.requires_grad], h.lr_g)]
        critics = [p for m in self.critics() for p in m.parameters()]
        if critics:
            opts.append(make_optimizer(h, critics, h.lr_d))
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
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    def step_generator(self, stream: int = 0) -> torch.Generator:
        """Random numbers of a step (content noise, GP mixing; stream 1: equivariance transforms) as a pure
        function of (seed, step, stream): a resumed run draws exactly what the uninterrupted run drew, with
        no RNG state to checkpoint."""
        return torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step + stream * 10**12)

    def forward_pass(self, batch: dict) -> G2GResult:
        h = self.hparams
        if h.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
        noise = self.step_generator()
        return g2g_forward(self.generator, batch["x1"], batch["x2"], batch["ref1"], batch["ref2"],
                           h.content_noise, noise, long=self.long_active(), short=self.needs_short,
                           rerender=h.lambda_rerender > 0)

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
        for m in self.critics():
            m.requires_grad_(False)
        g_terms = self.generator_terms(batch, res)
        if self.hparams.lambda_identity:  # the weight of this step (the generator's step advances global_step)
            logs["train/identity_weight"] = self.identity_weight()
        g_total = sum(g_terms.values())
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_total)
        for m in self.critics():
            m.requires_grad_(True)
        if fault := self.nonfinite(g_terms, opt_g):
            return self.skip_step(opt_g, opt_d, fault)
        if self.hparams.clip_grad_norm > 0 or self.hparams.clip_spike > 0:
            grads = [p.grad for group in opt_g.param_groups for p in group["params"] if p.grad is not None]
            running = self.grad_norm_mean if self.hparams.clip_spike > 0 else None
            logs["train/grad_norm_g"], new_running = clip_gradients(grads, self.hparams.clip_grad_norm,
                                                                    self.hparams.clip_spike, running)
            if running is not None:
                running.copy_(new_running)
        if self.hparams.lr_tail > 0:
            logs["train/lr_factor"] = self.set_learning_rates(opt_g, opt_d)
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
        """`optim.nonfinite_fault` of this step; with nan_policy 'stop' it is raised as one line."""
        fault = nonfinite_fault(terms, opt, self.named_parameters(), self.global_step + 1)
        if fault is not None and self.hparams.nan_policy == "stop":
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
        factor = tail_factor(run_progress(self.trainer, self.global_step), self.hparams.lr_tail)
        for opt, lr in ((opt_g, self.hparams.lr_g), (opt_d, self.hparams.lr_d)):
            for group in ([] if opt is None else opt.param_groups):
                group["lr"] = lr * factor
        return factor

    @torch.no_grad()
    def update_ema(self) -> None:
        step = self.global_step
        decay = self.hparams.ema_decay
        if self.hparams.init_from is None:  # an EMA loaded from a checkpoint needs no warm-up
            decay = min(decay, (1 + step) / (10 + step))
        # frozen networks are shared, not averaged; buffers (batch-norm statistics of arch lord) are copied
        pairs = [(e, p) for e, p in zip(self.generator_ema.parameters(), self.generator.parameters()) if e is not p]
        if pairs:
            torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1.0 - decay)
        buffers = [(e, b) for e, b in zip(self.generator_ema.buffers(), self.generator.buffers()) if e is not b]
        if buffers:
            torch._foreach_copy_([e for e, _ in buffers], [b for _, b in buffers])
