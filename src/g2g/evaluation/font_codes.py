"""What a model's content code holds on fonts: the character and the font, each read from the code by a
linear probe, next to the same probe on the pixels.

- character: fitted on the training fonts' codes, read on the held-out fonts' codes. A code that
  holds the character across typefaces reads it on fonts it never saw; if the code reads it no better
  than the pixels, the encoder has not made the character easier to tell apart across fonts.
- font: on the held-out fonts, fitted on the codes of half the charset (every other character) and
  read on the other half. The font is what a content code should not hold: what it holds of it is
  what a swap can copy from x1.

A swap that loses the character with a code that holds it is the decoder's failure; one whose code
does not hold it is the encoder's. Character labels are used here only, never in training."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .stream import chunk_size

PROBE_STEPS = 300  # full-batch Adam steps of each probe


def _fit_and_read(x_fit: torch.Tensor, y_fit: torch.Tensor, x_read: torch.Tensor, y_read: torch.Tensor,
                  n_classes: int, seed: int) -> float:
    """Accuracy on (x_read, y_read) of a multinomial logistic regression fitted on standardised x_fit."""
    mean, std = x_fit.mean(0), x_fit.std(0).clamp_min(1e-6)
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(x_fit.shape[1], n_classes, generator=g)).requires_grad_()
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    z = (x_fit - mean) / std
    for _ in range(PROBE_STEPS):
        loss = F.cross_entropy(z @ w + b, y_fit) + 1e-4 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (((x_read - mean) / std @ w + b).argmax(1) == y_read).float().mean().item()


@torch.no_grad()
def content_codes(model, images: torch.Tensor) -> torch.Tensor:
    """Content codes of images (N, 3, H, W) on the CPU, in chunks of the evaluation's size.  # (N, C, h, w)"""
    chunk = chunk_size(int(images.shape[-1]))
    return torch.cat([model.encode(images[i:i + chunk].to(model.device))[0].float().cpu()
                      for i in range(0, len(images), chunk)])


def content_probes(model, train_ds, test_ds, seed: int = 0) -> dict:
    """{"character": {"code", "pixels", "chance"}, "font": {...}}: accuracies of the two probes (see the
    module doc) on the model's content codes and on the grey pixels. The datasets: `FontsDataset`s (or
    anything with images (N, 3, H, W), labels (N,) font, chars (N,) character, charset, num_classes)."""
    with torch.enable_grad():
        features = {"code": (content_codes(model, train_ds.images).flatten(1),
                              content_codes(model, test_ds.images).flatten(1)),
                    "pixels": (train_ds.images[:, 0].flatten(1).float(), test_ds.images[:, 0].flatten(1).float())}
        n_chars = len(train_ds.charset)
        fit = test_ds.chars % 2 == 0  # the font probe: fitted on every other character, read on the rest
        out: dict[str, dict[str, float]] = {"character": {"chance": 1 / n_chars},
                                            "font": {"chance": 1 / test_ds.num_classes}}
        for name, (train, test) in features.items():
            out["character"][name] = _fit_and_read(train, train_ds.chars, test, test_ds.chars, n_chars, seed)
            out["font"][name] = _fit_and_read(test[fit], test_ds.labels[fit], test[~fit], test_ds.labels[~fit],
                                              test_ds.num_classes, seed)
    return out
