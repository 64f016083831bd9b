"""`g2g demo` (what `make demo` runs): train the `g2g` preset on the built-in shapes, evaluate it, and
write the exported model, a swap panel, a class × content grid and the metrics to one folder."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image


def grid_figure(model, out: Path, size: int, n: int = 8, seed: int = 0, dataset: str = "shapes") -> Path:
    """Class × content grid on test images of n different classes of a built-in dataset (`shapes`,
    `digits`): row i shows image i's class drawn with each column's content; the first row and column
    are the real images."""
    from .data.datamodule import make_dataset
    test: Any = make_dataset(dataset, "test", size, seed=seed)  # a built-in dataset: .images, .labels in memory
    first = torch.stack([torch.nonzero(test.labels == c)[0, 0] for c in test.labels.unique()[:n]])
    images = test.images[first]
    g = model.grid(images).cpu()                                         # (n, n, 3, H, W)
    blank = torch.full_like(images[:1], 1.0)
    top = torch.cat([blank, images])                                     # header row: contents
    rows = torch.cat([images[:, None], g], dim=1)                        # left column: classes
    tiles = torch.cat([top[None], rows]).flatten(0, 1)
    save_image(tiles * 0.5 + 0.5, out, nrow=n + 1, padding=1, pad_value=1.0)
    return out


def swap_panel(model, out: Path, size: int, n: int = 8, seed: int = 0) -> Path:
    """Rows: x1, x2, m1 (content x1, class x2), true render of m1, r1 (long reconstruction)."""
    from .data.shapes import ShapesDataset, render
    from .evaluation.pairs import make_pairs
    test = ShapesDataset("test", size=size, seed=seed)
    i, j = make_pairs(test.labels, n, seed)
    x1, x2 = test.images[i], test.images[j]
    res = model.swap(x1, x2)
    truth = render(test.labels[j], test.factors[i], size)
    save_image(torch.cat([x1, x2, res.m1.cpu(), truth, res.r1.cpu()]) * 0.5 + 0.5, out, nrow=n,
               padding=1, pad_value=1.0)
    return out


def run_demo(out_dir: str = "outputs/demo", preset: str = "g2g", extra: list[str] | None = None) -> dict:
    from .configs import preset_args
    from .evaluation.report import run_eval
    from .files import atomic_write
    from .inference import load
    from .training import run_training
    out = Path(out_dir)
    if (out / "train").exists():
        shutil.rmtree(out / "train")  # a fresh run each time; old results are overwritten below
    start = time.monotonic()
    run_training([*preset_args(preset), "--trainer.default_root_dir", str(out / "train"), *(extra or [])])
    trained = time.monotonic() - start
    model_file = sorted((out / "train").rglob("model.safetensors"))[-1]
    # copies are renamed into place: an interrupted demo never leaves half a model where one was
    atomic_write(out / "model.safetensors", lambda tmp: shutil.copyfile(model_file, tmp))
    atomic_write(out / "model.json", lambda tmp: shutil.copyfile(model_file.with_suffix(".json"), tmp))
    panels = sorted(model_file.parent.glob("panels/*.png"))
    if panels:
        atomic_write(out / "training_panel.png", lambda tmp: shutil.copyfile(panels[-1], tmp))
    model = load(out / "model.safetensors")
    size = model.config.image_size
    swap_panel(model, out / "swap_panel.png", size)
    grid_figure(model, out / "grid.png", size)
    # half of `g2g eval`'s default test pairs and a shorter classifier run: the full evaluation took 4.3
    # of the demo's 12.8 minutes on an idle 2-core CPU, this one 1.5 of 10.1; `g2g eval` keeps the defaults
    report = run_eval(out / "model.safetensors", data="shapes", out_dir=out, n_pairs=1000, classifier_steps=3000)
    print(report["markdown"])
    print(f"\ntrained for {trained / 60:.1f} min; total {(time.monotonic() - start) / 60:.1f} min")
    print(f"results in {out}/: model.safetensors (+ model.json), swap_panel.png, grid.png, "
          f"training_panel.png, metrics.json, metrics.md; TensorBoard logs in {out / 'train'}")
    return report
