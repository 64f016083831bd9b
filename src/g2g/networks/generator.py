"""The G2G generator: content encoder E_A, class encoder E_B and decoder G, built from the typed config
of one architecture (networks/archs.py), which travels with the weights: an exported model needs
nothing else. `class_encoder: vggface2` replaces E_B by the frozen VGGFace2 identity network
(2048-d codes)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import archs  # noqa: F401  (registers the architectures)
from .arch_config import ARCHS, ArchConfig, config_from_dict, generator_config
from .identity import IdentityNet
from .sprite import fit_pose

__all__ = ["ARCHS", "ArchConfig", "Generator", "config_from_dict", "generator_config"]


class Generator(nn.Module):
    """E_A, E_B and G with the three primitive operations; the G2G wiring composes them."""

    content_mean: torch.Tensor  # (a buffer of centred architectures only)

    def __init__(self, config: ArchConfig | None = None, class_encoder: nn.Module | None = None):
        """config: the architecture (default: the small 32 px `g2g` one). class_encoder: the network for
        class_encoder 'vggface2' (the loaded identity network), instead of a randomly initialised one to
        load weights into."""
        super().__init__()
        self.config = config = generator_config() if config is None else config
        learned = config.class_encoder == "learned"
        # registered in the order E_A, E_B, G (a frozen E_B last): parameters, state dicts and optimizers
        # list them in this order
        self.content_encoder, learned_encoder, decoder = config.build(learned)
        if learned_encoder is not None:
            self.class_encoder: nn.Module = learned_encoder
        self.decoder = decoder
        if learned_encoder is None:  # frozen, always in eval mode, with the published weights (given, or loaded later)
            self.class_encoder = IdentityNet() if class_encoder is None else class_encoder
        self.centred = bool(getattr(config, "content_centre", False))
        if self.centred:  # the running mean of the class centres: the centre of an image given alone
            self.register_buffer("content_mean", torch.zeros(config.content_shape))

    def content_centre(self, refs: torch.Tensor) -> torch.Tensor:
        """Images of one class each, (B, K, 3, H, W) (or (B, 3, H, W): K = 1) → the mean content code of
        each image's K references before centring, (B, *content_shape): the part of the code that the
        class's images share. In train mode it also moves `content_mean` (rate 0.01) towards the batch's
        mean centre."""
        refs = refs if refs.dim() == 5 else refs[:, None]
        b, k = refs.shape[:2]
        centre = self.content_encoder(refs.flatten(0, 1)).unflatten(0, (b, k)).mean(1)
        if self.training:
            with torch.no_grad():
                self.content_mean.lerp_(centre.mean(0).to(self.content_mean.dtype), 0.01)
        return centre

    def encode_content(self, x: torch.Tensor, class_code: torch.Tensor | None = None,
                       centre: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) → content code of `config.content_shape` per image.

        A centred architecture (`content_centre`) subtracts the centre of each image's class, `centre`
        ((B, *content_shape), from `content_centre` of other images of the class); without it, the running
        mean of the centres seen in training, `content_mean`.

        Arch sprite with n_fit > 0, in eval mode: the encoder's pose is refined by fitting the template of
        the image's own class code (`class_code`, (B, D), computed from x when not given) to the image;
        the refinement carries no gradient. Training (train mode) uses the encoder's pose alone."""
        content = self.content_encoder(x)
        if self.centred:
            content = content - (self.content_mean if centre is None else centre)
        steps = self.config.pose_fit_steps
        if steps and not self.training:
            code = self.encode_class(x) if class_code is None else class_code
            decoder: Any = self.decoder  # a SpriteDecoder: only arch sprite fits poses
            content = content + (fit_pose(decoder, x, content, code, steps) - content).detach()
        return content

    def encode_class(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, class_dim); (B, K, 3, H, W) → mean over the K references."""
        if x.dim() == 5:  # K references of one class each, encoded as one batch
            b, k = x.shape[:2]
            return self.class_encoder(x.flatten(0, 1)).view(b, k, -1).mean(dim=1)
        return self.class_encoder(x)

    def decode(self, content: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        """content code, class code (B, class_dim) → image (B, 3, H, W) in [-1, 1]"""
        return self.decoder(content, class_code)
