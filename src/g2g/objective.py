"""The objective of a G2G step: every loss as a named, weighted term (`lambda_<term>`), computed from
the batch and the G2G pass. A mixin of G2GModule: the attributes declared below are what it reads,
and the module builds them."""
from __future__ import annotations

from typing import Any, Callable

import torch

from . import losses, pose_losses
from .hparams import CriticOptions, LossWeights, Schedule
from .networks.discriminators import ProjectionDiscriminator
from .networks.generator import Generator
from .optim import run_progress
from .wiring import G2GResult, augmented


class G2GObjective:
    """Critic and generator terms of G2GModule (hparams.LossWeights says what each weight weighs)."""

    # options
    loss: LossWeights
    critic: CriticOptions
    schedule: Schedule
    # networks: the trained generator, the critics (None when no weight needs them), frozen networks
    generator: Generator
    discriminator: Any    # nn.Module, or None when no weight needs it (as below)
    class_critic: Any
    class_head: Any
    content_probe: Any
    identity: Any
    perceptual: Any
    # running statistics (buffers) of lambda_pose_moments and lambda_class_centre
    pose_means: torch.Tensor
    pose_seen: torch.Tensor
    class_centres: torch.Tensor
    class_seen: torch.Tensor
    match_codes: torch.Tensor     # (bank, code) and their classes (bank,), -1 where empty; the next slot to fill
    match_labels: torch.Tensor
    match_next: torch.Tensor
    # the GAN loss pair and the R1 penalty of the critic options
    d_loss: Callable[..., torch.Tensor]
    g_loss: Callable[..., torch.Tensor]
    r1_penalty: Callable[..., torch.Tensor]
    # from the LightningModule
    global_step: int
    training: bool
    trainer: Any

    def step_generator(self, stream: int = 0) -> torch.Generator:
        raise NotImplementedError

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Discriminator scores and, for the projection discriminator, its features (B, F, h, w); the
        projection discriminator scores each image as `labels`, the class it should show."""
        if isinstance(self.discriminator, ProjectionDiscriminator):
            return self.discriminator(images, labels)
        return self.discriminator(images), None

    def critic_terms(self, batch: dict, res: G2GResult) -> dict[str, torch.Tensor]:
        """Named, weighted critic losses on real images and detached mixed images."""
        terms = {}
        real, y_real = torch.cat([batch["x1"], batch["x2"]]), torch.cat([batch["y1"], batch["y2"]])
        if self.discriminator is not None:
            fake, y_fake = torch.cat([res.m1, res.m2]).detach(), torch.cat([batch["y2"], batch["y1"]])  # m1: x2's class
            if self.critic.lambda_r1:
                real = real.detach().requires_grad_(True)
            real_scores, _ = self.score(real, y_real)
            terms["d_adv"] = self.critic.lambda_d_adv * self.d_loss(real_scores, self.score(fake, y_fake)[0])
            if self.critic.gan_loss == "wgangp":
                terms["d_gp"] = 10.0 * losses.gradient_penalty(self.discriminator, real, fake,
                                                                self.step_generator())
            if self.critic.lambda_r1:
                terms["d_r1"] = self.critic.lambda_r1 * self.r1_penalty(real_scores, real)
        if self.class_critic is not None:
            terms["d_class"] = losses.class_consistency(self.class_critic(real.detach()), y_real)
        if self.content_probe is not None:
            codes = torch.cat([res.a1, res.a2]).detach().flatten(1)
            terms["d_content_probe"] = losses.class_consistency(self.content_probe(codes), y_real)
        return terms

    def identity_weight(self) -> float:
        return self.loss.lambda_identity * losses.linear_warmup(self.global_step, self.schedule.identity_warmup_start,
                                                        self.schedule.identity_warmup_steps)

    def long_active(self) -> bool:
        """Whether this step trains the reassembly pass: a term needs it (needs_long) and the run has reached
        long_start (`optim.run_progress`; a run with no step or time limit trains it from the start)."""
        if not self.loss.needs_long or self.schedule.long_start <= 0:  # no progress asked (a collective under DDP)
            return self.loss.needs_long
        progress = run_progress(self.trainer, self.global_step)
        return progress is None or progress >= self.schedule.long_start

    def generator_terms(self, batch: dict, res: G2GResult) -> dict[str, torch.Tensor]:
        """Weighted generator losses by name (only the active ones)."""
        x1, x2 = batch["x1"], batch["x2"]
        terms = self.reconstruction_terms(x1, x2, res)
        if self.loss.lambda_rerender and res.q1 is not None and res.q2 is not None:
            terms["rerender"] = self.loss.lambda_rerender * 2 * losses.l1(
                torch.cat([res.q1, res.q2]), torch.cat([res.m1, res.m2]).detach())
        if self.loss.lambda_content_cycle and res.a_m1 is not None and res.a_m2 is not None:
            terms["content_cycle"] = self.loss.lambda_content_cycle * (
                losses.code_cycle(res.a_m1, res.a1) + losses.code_cycle(res.a_m2, res.a2))
        if self.loss.lambda_class_cycle and res.b_m1 is not None and res.b_m2 is not None:
            terms["class_cycle"] = self.loss.lambda_class_cycle * (
                losses.code_cycle(res.b_m1, res.b2) + losses.code_cycle(res.b_m2, res.b1))
        if self.loss.lambda_content_l2:
            terms["content_l2"] = self.loss.lambda_content_l2 * (
                losses.activation_l2(res.a1) + losses.activation_l2(res.a2))
        if self.class_head is not None:
            terms["class_code"] = self.loss.lambda_class_code * losses.class_consistency(
                self.class_head(torch.cat([res.b1, res.b2])), torch.cat([batch["y1"], batch["y2"]]))
        if self.loss.lambda_content_contrast or self.loss.lambda_content_match:
            terms.update(self.content_contrast_terms(batch, res))
        if self.content_probe is not None:
            terms["content_probe"] = self.loss.lambda_content_probe * losses.confusion(
                self.content_probe(torch.cat([res.a1, res.a2]).flatten(1)))
        if self.loss.lambda_equivariance:
            terms["equivariance"] = self.loss.lambda_equivariance * self.equivariance_loss(x1, x2, res)
        if self.loss.lambda_pose_moments:
            labels = torch.cat([batch["y1"], batch["y2"]])
            loss, means, seen = pose_losses.pose_moments(torch.cat([res.a1, res.a2]), labels, self.pose_means,
                                                         self.pose_seen, x1.shape[-1], self.loss.pose_moment_rate)
            if self.training:  # the running means advance once per training step
                self.pose_means.copy_(means)
                self.pose_seen.copy_(seen)
            terms["pose_moments"] = self.loss.lambda_pose_moments * loss
        if self.loss.lambda_class_centre:
            loss, centres, seen = losses.class_centre(torch.cat([res.b1, res.b2]),
                                                      torch.cat([batch["y1"], batch["y2"]]), self.class_centres,
                                                      self.class_seen)
            if self.training:  # the running centres advance once per training step
                self.class_centres.copy_(centres)
                self.class_seen.copy_(seen)
            terms["class_centre"] = self.loss.lambda_class_centre * loss
        if self.class_critic is not None:
            logits = self.class_critic(torch.cat([res.m1, res.m2]))
            terms["class"] = self.loss.lambda_class * losses.class_consistency(
                logits, torch.cat([batch["y2"], batch["y1"]]))
        weight = self.identity_weight()
        if weight > 0:  # (nothing to compute while the warm-up holds the weight at 0)
            terms["identity"] = weight * self.identity_loss(x1, x2, res)
        if self.discriminator is not None:
            terms.update(self.adversarial_terms(batch, res))
        return terms

    def content_contrast_terms(self, batch: dict, res: G2GResult) -> dict[str, torch.Tensor]:
        """Each content code of the pass (a1, a2: of a distorted view, `content_augment`) against the codes of
        the K references of its class (negatives, distorted alike, without gradient): lambda_content_contrast
        takes as positive the code of another distorted view of the same image, lambda_content_match the
        nearest code among the other classes' references (without gradient). The code must tell apart the
        images of one class; the match also draws it to the like image of another class."""
        gen, strength, w, tau = self.generator, self.loss.content_augment, self.loss, self.loss.content_contrast_tau
        x, refs = torch.cat([batch["x1"], batch["x2"]]), torch.cat([batch["ref1"], batch["ref2"]])  # refs (2B, K, ...)
        query = torch.cat([res.a1, res.a2]).flatten(1)
        with torch.no_grad():
            negatives = gen.encode_content(augmented(refs.flatten(0, 1), strength, self.step_generator(3)))
        negatives = negatives.flatten(1).unflatten(0, refs.shape[:2])                        # (2B, K, code)
        terms = {}
        if w.lambda_content_contrast:
            positive = gen.encode_content(augmented(x, strength, self.step_generator(2))).flatten(1)
            terms["content_contrast"] = w.lambda_content_contrast * losses.content_contrast(
                query, positive, negatives, tau)
        if w.lambda_content_match:
            labels = torch.cat([batch["y1"], batch["y2"]])
            codes, code_labels = negatives.flatten(0, 1), labels.repeat_interleave(refs.shape[1])
            positive = losses.nearest_other(query.detach(), labels, torch.cat([codes, self.match_codes]),
                                            torch.cat([code_labels, self.match_labels]))
            if self.training:  # the bank advances once per training step
                self.remember_codes(codes, code_labels)
            terms["content_match"] = w.lambda_content_match * losses.content_contrast(query, positive, negatives, tau)
        return terms

    def remember_codes(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Write codes (N, D) and their classes into lambda_content_match's bank, oldest first out."""
        bank = len(self.match_codes)
        if not bank:
            return
        codes, labels = codes[-bank:], labels[-bank:]
        slots = (self.match_next + torch.arange(len(codes), device=codes.device)) % bank
        self.match_codes[slots] = codes.to(self.match_codes.dtype)
        self.match_labels[slots] = labels
        self.match_next.copy_((self.match_next + len(codes)) % bank)

    def reconstruction_terms(self, x1: torch.Tensor, x2: torch.Tensor, res: G2GResult) -> dict[str, torch.Tensor]:
        """Short (x̂ vs x) and long (r vs x) reconstruction: L1 of pixels, or of VGG16 features, where the
        features of x are computed once, without gradients, and those of x̂ and r in one call, with the
        `recon_edges` and `recon_pyramid` terms where weighted (`losses.reconstruction`). Each term is the
        sum over the pair (x1, x2) of the mean distance."""
        images = {"short": (res.x1_hat, res.x2_hat), "long": (res.r1, res.r2)}
        drawn = {name: [im for im in pair if im is not None] for name, pair in images.items()}
        names = [name for name in images if getattr(self.loss, f"lambda_{name}") and len(drawn[name]) == 2]
        if not names:
            return {}
        pred, target = torch.cat([im for name in names for im in drawn[name]]), torch.cat([x1, x2])
        if self.perceptual is not None:
            with torch.no_grad():
                target = self.perceptual(target)
            pred = self.perceptual(pred)
        return {name: getattr(self.loss, f"lambda_{name}") * 2 * losses.reconstruction(
                    p, target, self.loss.recon_edges, self.loss.recon_pyramid)
                for name, p in zip(names, pred.split(len(target)))}

    def equivariance_loss(self, x1: torch.Tensor, x2: torch.Tensor, res: G2GResult) -> torch.Tensor:
        """Pose of randomly transformed x1, x2 against their pose moved by the same transforms (arch sprite)."""
        x, pose = torch.cat([x1, x2]), torch.cat([res.a1, res.a2])
        transform = [t.to(x.device) for t in pose_losses.random_similarity(len(x), self.step_generator(1))]
        moved = self.generator.encode_content(pose_losses.transform_images(x, *transform))
        return pose_losses.pose_error_px(moved, pose_losses.transform_poses(pose, *transform), x.shape[-1])

    def identity_loss(self, x1: torch.Tensor, x2: torch.Tensor, res: G2GResult) -> torch.Tensor:
        """‖E_ID(x2) − E_ID(m1)‖₁ + ‖E_ID(x1) − E_ID(m2)‖₁. When E_ID is the class encoder, both sides are
        class codes of the pass (b2 is then the code of x2's class references when pairs are supervised)."""
        if self.identity is self.generator.class_encoder and res.b_m1 is not None and res.b_m2 is not None:
            mixed, target = torch.cat([res.b_m1, res.b_m2]), torch.cat([res.b2, res.b1])
        else:
            with torch.no_grad():
                target = self.identity(torch.cat([x2, x1]))              # (2B, 2048)
            mixed = self.identity(torch.cat([res.m1, res.m2]))
        return 2 * losses.l1(mixed, target)

    def adversarial_terms(self, batch: dict, res: G2GResult) -> dict[str, torch.Tensor]:
        """Adversarial and feature-matching terms from one discriminator call on the generated images, each
        scored as the class it should show (m1: x2's, x̂1 and r1: x1's); features are averaged over space."""
        w, y1, y2 = self.loss, batch["y1"], batch["y2"]
        groups: dict[str, tuple[tuple[Any, Any], tuple[torch.Tensor, torch.Tensor]]] = {
            "mixed": ((res.m1, res.m2), (y2, y1))}
        if w.lambda_adv_short or w.lambda_fm_short:
            groups["short"] = ((res.x1_hat, res.x2_hat), (y1, y2))
        if (w.lambda_fm_long or w.lambda_fm_mixed_long) and res.r1 is not None:
            groups["long"] = ((res.r1, res.r2), (y1, y2))
        all_scores, features = self.score(torch.cat([im for ims, _ in groups.values() for im in ims]),
                                          torch.cat([y for _, ys in groups.values() for y in ys]))
        n = 2 * len(y1)
        scores = dict(zip(groups, all_scores.split(n)))
        terms = {}
        if w.lambda_adv:
            terms["adv"] = w.lambda_adv * self.g_loss(scores["mixed"])
        if w.lambda_adv_short:
            terms["adv_short"] = w.lambda_adv_short * self.g_loss(scores["short"])
        if features is None or not w.active("projection"):
            return terms
        f = dict(zip(groups, features.split(n)))
        with torch.no_grad():  # features of the real images x1, x2: targets
            real = self.score(torch.cat([batch["x1"], batch["x2"]]), torch.cat([y1, y2]))[1]
        assert real is not None  # the projection discriminator returns its features
        fm = {"fm_mixed": lambda: losses.feature_matching(f["mixed"], real.roll(n // 2, dims=0)),  # m1 vs x2
              "fm_short": lambda: losses.feature_matching(f["short"], real),
              "fm_long": lambda: losses.feature_matching(f["long"], real),
              "fm_mixed_long": lambda: losses.feature_matching(f["long"], f["mixed"].detach().roll(n // 2, dims=0))}
        for name, term in fm.items():
            weight = getattr(w, f"lambda_{name}")
            if weight and (not name.endswith("long") or "long" in f):  # (no "long" before long_start)
                terms[name] = weight * 2 * term()
        return terms
