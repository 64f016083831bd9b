"""The training module's options in typed groups, each checking its own values (one-line ValueErrors
before anything is built). `LossWeights` tags each weight with what it needs, so adding a loss term is
one field here and one term in objective.py."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import losses

DISCRIMINATORS = ("basic", "n_layers", "pixel", "projection")
NAN_POLICIES = ("stop", "skip")


def weight(default: float = 0.0, *needs: str) -> Any:
    """A loss weight tagged with what it needs when > 0: 'short' / 'long' (that pass of the generator),
    'critic' (a discriminator), 'projection' (the projection discriminator), 'labels' (a labelled
    dataset) or 'sprite' (a pose content code)."""
    return field(default=default, metadata={"needs": needs})


def _choice(name: str, value: str, choices: tuple[str, ...] | Any) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")


@dataclass(frozen=True)
class Group:
    """A group of options: built from a dict or itself, turned back into a plain dict for checkpoints."""

    @classmethod
    def of(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{cls.__name__} options are a mapping, not {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options {unknown}; known: {sorted(known)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LossWeights(Group):
    """Weights of the generator's loss terms (0: off) and the parameters of two of them."""

    lambda_short: float = weight(1.0, "short")
    """short reconstruction x̂ vs x (pixel L1, or VGG features)"""
    lambda_long: float = weight(1.0, "long")
    """long reconstruction r vs x: the reassembly cycle"""
    lambda_rerender: float = weight(0.0, "long")
    """L1 of G(a(m1), b2) vs the detached m1 (and m2)"""
    lambda_content_cycle: float = weight(0.0, "long")
    """‖a(m) − a‖²"""
    lambda_class_cycle: float = weight(0.0, "long")
    """‖b(m1) − b2‖² + ‖b(m2) − b1‖²"""
    lambda_content_l2: float = weight()
    """L2 activation penalty on content codes (a bottleneck)"""
    lambda_class: float = weight(0.0, "labels")
    """class critic's cross-entropy on mixed images"""
    lambda_class_code: float = weight(0.0, "labels")
    """cross-entropy of a linear head on the class codes"""
    lambda_content_probe: float = weight(0.0, "labels")
    """content codes confuse a linear class probe"""
    lambda_equivariance: float = weight(0.0, "sprite")
    """pose of a moved image = the pose moved alike"""
    lambda_pose_moments: float = weight(0.0, "labels", "sprite")
    """each class's mean pose pulled to the common one"""
    lambda_class_centre: float = weight(0.0, "labels")
    """class codes pulled to their class's running centre"""
    lambda_content_contrast: float = weight(0.0, "labels")
    """content codes tell apart the images of one class (InfoNCE, `losses.content_contrast`)"""
    lambda_content_match: float = weight(0.0, "labels")
    """each content code nearer its nearest code of another class than its own class's (`losses.nearest_other`)"""
    lambda_identity: float = weight()
    """VGGFace2 identity of m1 vs x2 and m2 vs x1"""
    lambda_adv: float = weight(0.0, "critic")
    """adversarial term on mixed images"""
    lambda_adv_short: float = weight(0.0, "critic", "short")
    """adversarial term on short reconstructions"""
    lambda_fm_mixed: float = weight(0.0, "critic", "projection")
    """feature matching m1 vs x2, m2 vs x1"""
    lambda_fm_short: float = weight(0.0, "critic", "projection", "short")
    """feature matching x̂ vs x"""
    lambda_fm_long: float = weight(0.0, "critic", "projection", "long")
    """feature matching r vs x"""
    lambda_fm_mixed_long: float = weight(0.0, "critic", "projection", "long")
    """r1 vs m2, r2 vs m1"""
    recon_edges: float = 0.0
    """each reconstruction term adds this weight × the L1 of its error's differences between neighbours"""
    recon_pyramid: float = 0.0
    """each reconstruction term adds this weight × its L1 at ½ and at ¼ of the side (average-pooled)"""
    content_noise: float = 0.0
    """std of Gaussian noise on content codes in training (a bottleneck)"""
    content_augment: float = 0.0
    """strength of the random distortions of the content encoder's input in training (wiring.augmented)"""
    content_contrast_tau: float = 0.2
    """temperature of the cosine similarities of lambda_content_contrast and lambda_content_match"""
    content_match_bank: int = 2048
    """codes of recent steps' references that lambda_content_match searches besides the step's own"""
    pose_moment_rate: float = 0.02
    """weight of a batch in the running mean poses of lambda_pose_moments"""

    def __post_init__(self) -> None:
        negative = [f.name for f in fields(self) if getattr(self, f.name) < 0]
        if negative:
            raise ValueError(f"model.loss.{negative[0]} must be >= 0, got {getattr(self, negative[0])!r}")
        if not self.content_contrast_tau > 0:
            raise ValueError(f"model.loss.content_contrast_tau must be > 0, got {self.content_contrast_tau!r}")
        if not 0 < self.pose_moment_rate <= 1:
            raise ValueError(f"pose_moment_rate must be within (0, 1] (the weight of a batch in the running mean "
                             f"poses), got {self.pose_moment_rate!r}")

    def active(self, need: str) -> list[str]:
        """The weights > 0 that need `need`."""
        return [f.name for f in fields(self) if need in f.metadata.get("needs", ()) and getattr(self, f.name) > 0]

    @property
    def needs_short(self) -> bool:
        return bool(self.active("short"))

    @property
    def needs_long(self) -> bool:
        return bool(self.active("long"))

    @property
    def needs_critic(self) -> bool:
        return bool(self.active("critic"))


@dataclass(frozen=True)
class CriticOptions(Group):
    """The discriminator and its own loss."""

    gan_loss: str = "lsgan"
    """lsgan | vanilla | hinge | wgangp"""
    discriminator: str = "basic"
    """PatchGAN basic | n_layers | pixel, or FUNIT's class-conditional projection"""
    d_layers: int = 3
    """PatchGAN depth for n_layers"""
    d_res_blocks: int = 10
    """residual blocks of the projection discriminator (even)"""
    ndf: int = 64
    """discriminator base width"""
    lambda_d_adv: float = 1.0
    """weight of the critic's real/fake term (the mean of the two)"""
    lambda_r1: float = 0.0
    """R1 penalty on real images (projection: FUNIT's scale)"""

    def __post_init__(self) -> None:
        _choice("gan_loss", self.gan_loss, losses.GAN_LOSSES)
        _choice("discriminator", self.discriminator, DISCRIMINATORS)
        if self.discriminator == "projection" and self.gan_loss == "wgangp":
            raise ValueError("gan_loss 'wgangp' is not defined for the class-conditional 'projection' discriminator")


@dataclass(frozen=True)
class OptimOptions(Group):
    """Optimizers of the generator and the critics, gradient clipping and the generator's EMA."""

    optimizer: str = "adam"
    """adam | rmsprop (FUNIT), for the generator and the critics alike"""
    lr_g: float = 1e-3
    """learning rate of the generator"""
    lr_d: float = 1e-3
    """learning rate of the critics"""
    beta1: float = 0.5
    """Adam β1"""
    beta2: float = 0.999
    """Adam β2"""
    weight_decay: float = 0.0
    """weight decay (both optimizers)"""
    clip_grad_norm: float = 0.0
    """largest L2 norm of the generator's whole gradient (0: no clipping)"""
    clip_spike: float = 0.0
    """> 0 also caps it at this multiple of its running mean (0: off)"""
    ema_decay: float = 0.999
    """decay of the generator's exponential moving average (panels, export)"""

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        if not self.clip_grad_norm >= 0:
            raise ValueError(f"clip_grad_norm must be >= 0 (0: no clipping), got {self.clip_grad_norm!r}")
        if not (self.clip_spike == 0 or self.clip_spike >= 1):
            raise ValueError(f"clip_spike must be 0 (off) or >= 1 (a multiple of the running mean gradient norm), "
                             f"got {self.clip_spike!r}")


@dataclass(frozen=True)
class Schedule(Group):
    """What changes over a run. Fractions count max_steps, or max_time when only that is set."""

    lr_tail: float = 0.0
    """last fraction of the run over which both learning rates fall to 0 (half cosine)"""
    long_start: float = 0.0
    """fraction of the run before the reassembly pass is trained"""
    identity_warmup_start: int = 0
    """steps with identity weight 0 …"""
    identity_warmup_steps: int = 0
    """… then steps of its linear rise to lambda_identity"""

    def __post_init__(self) -> None:
        if not 0 <= self.lr_tail <= 1:
            raise ValueError(f"lr_tail must be within [0, 1] (a fraction of the run; 0: constant rates), "
                             f"got {self.lr_tail!r}")
        if not 0 <= self.long_start < 1:
            raise ValueError(f"long_start must be within [0, 1) (the fraction of the run before the reassembly "
                             f"pass is trained), got {self.long_start!r}")


@dataclass(frozen=True)
class FrozenNets(Group):
    """Pretrained networks used as they are, from files the user gives."""

    perceptual: str = "none"
    """reconstructions compared as pixels (none) or VGG16 features (vgg16)"""
    perceptual_weights: str | None = None
    """VGG16 state dict; None: torchvision's file in the torch hub cache"""
    perceptual_layer: str = "relu2_2"
    """VGG16 layer whose features are compared"""
    identity_weights: str | None = None
    """VGGFace2 resnet50_ft state dict (class_encoder vggface2, lambda_identity)"""

    def __post_init__(self) -> None:
        _choice("perceptual", self.perceptual, ("none", "vgg16"))


def check_together(loss: LossWeights, critic: CriticOptions, arch: str, num_classes: int,
                   init_from: str | None, nan_policy: str) -> None:
    """Checks that span groups: what each loss weight needs, and the options that need one arch."""
    _choice("nan_policy", nan_policy, NAN_POLICIES)
    labelled = loss.active("labels")
    if labelled and num_classes < 2:
        raise ValueError(f"{labelled[0]} > 0 needs a labelled dataset with at least 2 classes (got {num_classes}):"
                         f" use one sub-folder per class, or set model.loss.{labelled[0]}: 0")
    projection = loss.active("projection")
    if projection and critic.discriminator != "projection":
        raise ValueError(f"{projection[0]} (feature matching) needs model.critic.discriminator 'projection'")
    posed = loss.active("sprite")
    if posed and arch != "sprite":
        raise ValueError(f"{posed[0]} needs a pose content code: generator.arch 'sprite', not {arch!r} "
                         f"(or set model.loss.{posed[0]}: 0)")
    if init_from is not None and arch != "funit":
        raise ValueError(f"init_from takes a FUNIT checkpoint: it needs generator.arch 'funit', not {arch!r}")
