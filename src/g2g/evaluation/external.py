"""Metrics that need networks from outside the project: FID/KID of mixed images (Inception-v3 of
torch-fidelity), LPIPS (torchvision backbone + the LPIPS heads shipped with torchmetrics) and identity
similarity (the VGGFace2 ResNet-50 of `g2g.networks.identity`).

Nothing here downloads. Each loader checks that its package and weight file are present first and
otherwise raises `Unavailable` with one line that says what is missing and where it must go; the report
records that line instead of the metric. A feature network is any module mapping images (B, 3, H, W)
in [-1, 1] to features (B, D); tests inject small stand-ins.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from .intervals import bootstrap_ci, seed_ci

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's FID Inception-v3
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
LPIPS_MIN_SIZE = 64  # smaller images are upsampled (bilinear): AlexNet's pooling needs about 32 px


class Unavailable(RuntimeError):
    """A metric's package or weights are not on this machine; the message says what to install where."""


def hub_file(filename: str) -> Path:
    """Where torch.hub keeps (and would download) a checkpoint: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _require_file(path: Path, what: str, url: str) -> None:
    if not path.is_file():
        raise Unavailable(f"{what}: weights file {path} not found (offline: no download attempted); "
                          f"copy {url} there")


# ---- FID / KID ----

class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3 pool features (2048-d) of images in [-1, 1], any size (it resizes)."""

    def __init__(self, weights: Path):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)).float()  # (B, 2048)


def load_inception() -> InceptionFeatures:
    if importlib.util.find_spec("torch_fidelity") is None:
        raise Unavailable("FID/KID: the package torch-fidelity is not installed (pip install 'g2g[eval]')")
    path = hub_file(INCEPTION_FILE)
    _require_file(path, "FID/KID", INCEPTION_URL)
    return InceptionFeatures(path).eval()


@torch.no_grad()
def features_of(net, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """net applied in batches on its own device.  # (N, D) float64 on the CPU"""
    device = next(iter(net.parameters()), torch.empty(0)).device
    return torch.cat([net(chunk.to(device).float()).flatten(1).double().cpu()
                      for chunk in images.split(batch_size)])


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """FID of two feature sets (N1, D), (N2, D): ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^½.

    With Σ1 = AᵀA and Σ2 = BᵀB (A, B the centred features / √(N − 1)), tr (Σ1 Σ2)^½ is the sum of the
    singular values of A Bᵀ (N1 × N2), so no D × D matrix square root is needed."""
    a = (f1 - f1.mean(0)) / (len(f1) - 1) ** 0.5
    b = (f2 - f2.mean(0)) / (len(f2) - 1) ** 0.5
    trace_sqrt = torch.linalg.svdvals(a @ b.T).sum()
    return float((f1.mean(0) - f2.mean(0)).square().sum() + a.square().sum() + b.square().sum() - 2 * trace_sqrt)


def kernel_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """KID: unbiased MMD² with the cubic polynomial kernel (xᵀy / D + 1)³ (torchmetrics' formula)."""
    from torchmetrics.image.kid import poly_mmd
    return float(poly_mmd(f1, f2))


def realism(fake: torch.Tensor, real: torch.Tensor, net, n: int, chunks: int = 5, seed: int = 0) -> dict:
    """FID and KID of n fake images against n real ones, with the real-vs-real level as the reference.

    real needs 2n images: half A is compared with the fakes, half B with A (what a perfect generator
    would score at this sample size). Both are computed on `chunks` disjoint chunks of n / chunks
    images per side; each value is the mean over chunks with a 95 % t-interval over them (chunks are
    independent, and FID's bias depends on the sample size, so model and reference share it)."""
    if len(real) < 2 * n or len(fake) < n or n < 2 * chunks:
        raise ValueError(f"realism needs n ≥ {2 * chunks} fakes and 2n reals, got n={n}, "
                         f"{len(fake)} fakes, {len(real)} reals")
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    return realism_of_features(features_of(net, fake[:n]), features_of(net, real[order[:2 * n]]), chunks)


def realism_of_features(f_fake: torch.Tensor, f_real: torch.Tensor, chunks: int = 5) -> dict:
    """realism() from features: f_fake (n, D) of the fakes, f_real (2n, D) of the reals in a random order."""
    n = len(f_fake)
    if len(f_real) < 2 * n:
        raise ValueError(f"realism needs twice as many real features as fake ones, got {len(f_real)} and {n}")
    out: dict[str, Any] = {"n_per_side": n, "chunks": chunks}
    for name, fn in (("fid", frechet_distance), ("kid", kernel_distance)):
        model, ref = [], []
        for fake_c, a_c, b_c in zip(f_fake.chunk(chunks), f_real[:n].chunk(chunks), f_real[n:2 * n].chunk(chunks)):
            model.append(fn(fake_c, a_c))
            ref.append(fn(b_c, a_c))
        out[name] = float(np.mean(model))
        out[f"{name}_ci95"] = list(seed_ci(model))
        out[f"{name}_real_reference"] = float(np.mean(ref))
    return out


# ---- LPIPS ----

class LPIPS(nn.Module):
    """Per-image LPIPS distance of two (N, 3, H, W) batches in [-1, 1] (torchmetrics' implementation)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        backbone = cast(Literal["vgg", "alex", "squeeze"], net)  # checked by load_lpips
        self.metric = LearnedPerceptualImagePatchSimilarity(net_type=backbone, reduction="none")

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.to(self.metric.device).float(), target.to(self.metric.device).float()
        if min(pred.shape[-2:]) < LPIPS_MIN_SIZE:
            pred, target = (nn.functional.interpolate(t, size=LPIPS_MIN_SIZE, mode="bilinear", align_corners=False)
                            for t in (pred, target))
        return self.metric.net(pred.clamp(-1, 1), target.clamp(-1, 1)).flatten().cpu()  # (N,)


def load_lpips(net: str = "alex") -> LPIPS:
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS network {net!r}: choose one of {', '.join(LPIPS_BACKBONES)}")
    import torchvision
    weights = getattr(torchvision.models, LPIPS_BACKBONES[net]).IMAGENET1K_V1
    _require_file(hub_file(weights.url.rsplit("/", 1)[-1]), f"LPIPS ({net})", weights.url)
    return LPIPS(net).eval()


@torch.no_grad()
def lpips_summary(lpips, pred: torch.Tensor, target: torch.Tensor, seed: int = 0, batch_size: int = 100) -> dict:
    """Mean LPIPS with a 95 % bootstrap interval over the images."""
    values = torch.cat([lpips(p, t) for p, t in zip(pred.split(batch_size), target.split(batch_size))])
    return {"lpips": values.mean().item(), "lpips_ci95": list(bootstrap_ci(values, seed=seed))}


# ---- identity similarity ----

def load_identity(path: str | Path) -> nn.Module:
    """The VGGFace2 identity network from its weight file, via g2g.networks.identity."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"identity network weights not found: {path}")
    try:
        from ..networks.identity import IdentityNet
    except ImportError as e:
        raise Unavailable(f"identity similarity: g2g.networks.identity is not part of this installation "
                          f"({e}); the weight file {path} was not used") from None
    return IdentityNet.from_file(path).eval()
