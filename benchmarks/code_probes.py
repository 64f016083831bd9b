"""How much of the character a font model's content code holds, read by a small CNN rather than a line.

    python benchmarks/code_probes.py MODEL [--root /usr/share/fonts/truetype/aenigma] [--seed 0] [--steps 1500]

`g2g eval --data fonts` reads the content code with linear probes, which understate what a nonlinear
decoder can read (on the pixels a line reads the held-out fonts' characters far worse than a small CNN).
Here a small CNN (3×3 convolutions that halve the side down to 4, then a two-layer head) is fitted on the
training fonts' content codes with the character labels and read on the held-out fonts; beside it, a CNN
of the same design on their grey pixels. A code read about as well as the pixels holds the character, and
a model whose swaps lose it loses it in the decoder. Character labels are used here only, never in
training. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from g2g.data.fonts import FontsDataset  # noqa: E402
from g2g.evaluation.font_codes import content_codes  # noqa: E402
from g2g.inference import load  # noqa: E402

WIDTH = 64  # channels of the probe's convolutions
BATCH = 128  # glyphs a probe step


def probe_net(in_channels: int, side: int, n_classes: int) -> nn.Module:
    """Convolutions that halve the side down to 4, then a two-layer head. (B, C, side, side) → (B, n_classes)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, WIDTH, 3, padding=1), nn.ReLU()]
    while side > 4:
        layers += [nn.Conv2d(WIDTH, WIDTH, 3, stride=2, padding=1), nn.ReLU()]
        side //= 2
    layers += [nn.Flatten(), nn.Linear(WIDTH * side * side, 256), nn.ReLU(), nn.Linear(256, n_classes)]
    return nn.Sequential(*layers)


def fit_and_read(fit_x: torch.Tensor, fit_y: torch.Tensor, read_x: torch.Tensor, read_y: torch.Tensor,
                 n_classes: int, steps: int, seed: int) -> dict[str, float]:
    """Accuracy of the probe on the glyphs it read (held-out fonts) and on those it was fitted on."""
    torch.manual_seed(seed)
    net = probe_net(fit_x.shape[1], fit_x.shape[-1], n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(fit_x), (BATCH,), generator=g)
        loss = F.cross_entropy(net(fit_x[i]), fit_y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"held-out fonts": accuracy(net, read_x, read_y), "training fonts": accuracy(net, fit_x, fit_y)}


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> float:
    return sum((net(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum().item() for i in range(0, len(x), chunk)) / len(x)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an exported model (.safetensors) trained on fonts")
    p.add_argument("--root", default="/usr/share/fonts/truetype/aenigma", help="the fonts it was trained on")
    p.add_argument("--seed", type=int, default=0, help="the split's seed (the model's --data.seed) and the probe's")
    p.add_argument("--steps", type=int, default=1500, help="Adam steps of each probe")
    args = p.parse_args(argv)
    model = load(args.model)
    size = model.config.image_size
    train_ds, test_ds = (FontsDataset(args.root, split, size, args.seed) for split in ("train", "test"))
    n = len(train_ds.charset)
    out = {"model": str(args.model), "steps": args.steps, "chance": 1 / n,
           "code": fit_and_read(content_codes(model, train_ds.images), train_ds.chars,
                                content_codes(model, test_ds.images), test_ds.chars, n, args.steps, args.seed),
           "pixels": fit_and_read(train_ds.images[:, :1], train_ds.chars, test_ds.images[:, :1], test_ds.chars,
                                  n, args.steps, args.seed)}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
