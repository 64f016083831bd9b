"""Metric primitives of the evaluation: image fidelity, an independent classifier, code agreement and
the copy-through test (probes and DCI are in probes.py, 95 % intervals in intervals.py).

Images are float NCHW in [-1, 1]. Every function is pure (seeded, no global state changed) and
vectorised.
"""

import math
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .intervals import bootstrap_ci

PSNR_CAP_DB = 100.0  # identical images: PSNR is infinite; 100 dB (MSE 1e-10 on [0, 1]) keeps means finite


def _check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"expected two NCHW batches of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def per_image_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image pair on the [0, 1] scale (data range 1), capped at 100 dB.  # (N,)"""
    _check_images(pred, target)
    psnr = peak_signal_noise_ratio((pred.float() + 1) / 2, (target.float() + 1) / 2, data_range=1.0,
                                   reduction="none", dim=(1, 2, 3))
    return psnr.clamp(max=PSNR_CAP_DB)


def per_image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1, PSNR (dB) and SSIM of each image pair of two (N, C, H, W) batches in [-1, 1], on the [0, 1] scale.

    Each value is (N,). PSNR is capped at 100 dB. SSIM uses a Gaussian window of 11 (σ 1.5) from 64 px
    up, 7 (σ 1.0) from 16 px, else 3 (σ 0.5), so the window fits small images.
    """
    _check_images(pred, target)
    p, t = (pred.float() + 1) / 2, (target.float() + 1) / 2
    size = min(p.shape[-2:])
    kernel, sigma = (11, 1.5) if size >= 64 else (7, 1.0) if size >= 16 else (3, 0.5)
    ssim = cast(torch.Tensor, structural_similarity_index_measure(  # a tensor without return_full_image
        p, t, gaussian_kernel=True, kernel_size=kernel, sigma=sigma, data_range=1.0, reduction="none"))
    return {"l1": (p - t).abs().mean(dim=(1, 2, 3)), "psnr": per_image_psnr(pred, target), "ssim": ssim}


def image_metrics(pred: torch.Tensor, target: torch.Tensor, ci: bool = False, seed: int = 0) -> dict:
    """Mean L1, PSNR (dB) and SSIM of two (N, C, H, W) batches in [-1, 1] (see per_image_metrics).

    PSNR is the mean of per-image PSNRs (not the PSNR of the pooled MSE), so one perfect image cannot
    dominate. With ci, also "<name>_ci95": 95 % bootstrap intervals of each mean over the images.
    """
    per_image = per_image_metrics(pred, target)
    out: dict[str, Any] = {k: v.mean().item() for k, v in per_image.items()}
    if ci:
        out.update({f"{k}_ci95": list(bootstrap_ci(v, seed=seed)) for k, v in per_image.items()})
    return out


def flat_image_baseline(target: torch.Tensor) -> torch.Tensor:
    """Each target's own mean colour spread over the whole image.  # (N, C, H, W)

    An optimistic floor for swap fidelity: a model that outputs this knows nothing but the average colour
    of the answer, which it could not know, so a swap that scores below it has failed.
    """
    return target.mean(dim=(2, 3), keepdim=True).expand_as(target).clone()


def as_matrix(x) -> np.ndarray:
    """Tensor or array of N items of any shape → float (N, D)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


class Classifier(nn.Module):
    """Small CNN for 3×H×W images in [-1, 1], H from 16 to 128: conv blocks, global average pool, linear."""

    def __init__(self, num_classes: int, width: int = 16, in_channels: int = 3):
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 4 * width]
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 3:  # halve three times: 32 px ends at 4×4, 128 px at 16×16
                blocks.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))  # (N, num_classes) logits


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by its own integer shift in [-max_shift, max_shift] (edge padding + crop)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (N, C, H + 2s, W + 2s)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=gen, device=gen.device)).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 15,
                     batch_size: int = 32, lr: float = 6e-3, seed: int = 0, max_steps: int | None = None,
                     width: int = 16) -> Classifier:
    """Train the independent classifier of the evaluation on real (N, 3, H, W) images; returns it in eval
    mode.

    Adam for epochs × (N // batch_size) steps, or max_steps if fewer; the learning rate warms up over the
    first 5 % of those steps, then decays to 0 along a cosine, so a run shortened by max_steps still ends
    annealed. The only augmentation is a random shift of up to H/16 px (the class does not change). Runs
    on the images' device.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    device, batch_size = images.device, min(batch_size, len(images))
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Classifier(num_classes, width=width, in_channels=images.shape[1]).to(device)
    gen = torch.Generator().manual_seed(seed)
    labels = labels.to(device).long()
    steps = epochs * (len(images) // batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    max_shift = max(1, images.shape[-1] // 16)
    step = 0
    model.train()
    while True:
        order = torch.randperm(len(images), generator=gen).to(device)
        for idx in order[: len(order) - len(order) % batch_size].view(-1, batch_size):  # drop the ragged end
            if step >= steps:
                return model.eval()
            progress = step / steps
            for group in opt.param_groups:
                group["lr"] = lr * min(progress / 0.05, 0.5 * (1 + math.cos(math.pi * progress)))
            x = _random_shift(images[idx].float(), max_shift, gen)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted class of each (N, 3, H, W) image in [-1, 1].  # (N,) long, on the images' device"""
    device = next(model.parameters()).device
    preds = [model(chunk.to(device).float()).argmax(1) for chunk in images.split(batch_size)]
    return torch.cat(preds).to(images.device)


def pairwise_cosine(a, b) -> torch.Tensor:
    """Cosine similarity of the flattened rows of two (N, ...) batches.  # (N,)"""
    a, b = (torch.as_tensor(as_matrix(t)) for t in (a, b))
    return F.cosine_similarity(a, b, dim=1)


def cosine_agreement(a, b) -> float:
    """Mean cosine similarity of the flattened rows of two (N, ...) batches."""
    return pairwise_cosine(a, b).mean().item()


def copy_through(mixed: torch.Tensor, content_source: torch.Tensor, target: torch.Tensor | None = None,
                 reconstruction: torch.Tensor | None = None) -> torch.Tensor:
    """Which mixed images m1 = G(a1, b2) of pairs of different classes copy their content source x1.  # (N,) bool

    Distances are mean squared errors per image. Give exactly one of:
    target, the true mixed image t (on `shapes`, render(content of x1, class of x2)): m1 copies through
    when it is closer to x1 than to t, ‖m1 − x1‖ < ‖m1 − t‖. An identity "model" (m1 = x1) scores 1,
    the oracle (m1 = t) 0.
    reconstruction, the short reconstruction x̂1 = G(a1, b1), where no true mixed image exists: m1 copies
    through when swapping the class code moved the image by no more than x̂1 misses x1,
    ‖m1 − x̂1‖ ≤ ‖x̂1 − x1‖, i.e. m1 is as good a reconstruction of x1 as x̂1. An identity model
    (m1 = x̂1 = x1) and a decoder that ignores the class code score 1; a model whose class swap changes
    the image by more than its reconstruction error scores 0.
    """
    if (target is None) == (reconstruction is None):
        raise ValueError("copy_through needs exactly one of target (true mixed image) or reconstruction")
    _check_images(mixed, content_source)
    if target is not None:
        _check_images(mixed, target)
        return _mse(mixed, content_source) < _mse(mixed, target)
    assert reconstruction is not None  # exactly one of the two is given
    _check_images(mixed, reconstruction)
    return _mse(mixed, reconstruction) <= _mse(reconstruction, content_source)


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).square().mean(dim=(1, 2, 3))  # (N,)
