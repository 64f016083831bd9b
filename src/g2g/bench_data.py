"""`g2g bench --data DIR`: the data loader alone, per worker count, against the training step's rate.

The loader is the preset's G2GDataModule at the benchmark's image size and batch, reading DIR (CelebA's list
files: 'celeba'; FUNIT's Animal Faces lists: 'animals'; otherwise 'folder', one sub-folder per class), and
its `train_dataloader()` is iterated with nothing else running: warm-up batches first (the workers' start-up
and the first batch each), then the timed batches. Two rates: pairs/s, and images/s counting every image a
batch holds (x1, x2 and the references ref1, ref2: 2 + 2·k_refs images per pair, each decoded and resized).

The verdict compares pairs/s, the unit both sides share: the step's `images_per_s` counts 2 images per pair
(x1, x2), the loader's images/s counts the references too, so equal images/s would not mean equal speed.
The loader and a CUDA step run side by side (worker processes on the cores, the step on the device); on a
CPU the two share the cores, and training runs slower than the smaller of the two rates.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

# the result of `g2g bench --data DIR` (the step's own result, when timed, is under "step")
DATA_RESULT_FIELDS = ("preset", "image_size", "batch_images", "batch_pairs", "data", "dataset", "train_images",
                      "k_refs", "supervised", "images_per_pair", "loader", "best_workers", "loader_pairs_per_s",
                      "loader_images_per_s", "step", "step_source", "step_images_per_s", "step_pairs_per_s",
                      "bound", "loader_over_step", "verdict", "machine")


def dataset_of(root: Path) -> str:
    """The G2GDataModule dataset that reads `root`, from its layout."""
    from .data.real import ANIMAL_LISTS, CELEBA_SUBDIRS
    if any((root / sub / "list_eval_partition.txt").is_file() for sub in CELEBA_SUBDIRS):
        return "celeba"
    if (root / ANIMAL_LISTS["train"]).is_file():
        return "animals"
    return "folder"


def default_workers() -> list[int]:
    """0 (decoding in the main process), 1, 2 and one per usable core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return sorted({0, 1, 2, cores})


def batch_images(batch: dict) -> int:
    """Images in a batch: x1 and x2 (B each) and the references ref1 and ref2 (B·K each)."""
    return sum(batch[key].shape[:-3].numel() for key in ("x1", "x2", "ref1", "ref2"))


def time_loader(data_args: dict, workers: int, batches: int, warmup: int) -> dict:
    """Iterate a fresh G2GDataModule's training loader with `workers` worker processes: `warmup` batches
    plus one per worker untimed, then `batches` timed."""
    from .data.datamodule import G2GDataModule
    warm = warmup + workers
    args = {**data_args, "num_workers": workers,
            "steps_per_epoch": max(data_args.get("steps_per_epoch", 1), warm + batches + 1)}
    start = time.perf_counter()
    dm = G2GDataModule(**args)
    dm.setup("fit")  # indexing the folder
    setup_s = time.perf_counter() - start
    iterator = iter(dm.train_dataloader())
    start = time.perf_counter()
    for _ in range(warm):
        next(iterator)
    warmup_s = time.perf_counter() - start
    pairs = images = 0
    arrivals = []
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        arrivals.append(time.perf_counter())
        pairs, images = pairs + len(batch["x1"]), images + batch_images(batch)
    seconds = arrivals[-1] - start
    del iterator  # stops the worker processes
    gaps = [b - a for a, b in zip([start, *arrivals], arrivals)]
    return {"workers": workers, "setup_s": setup_s, "warmup_batches": warm, "warmup_s": warmup_s,
            "batches": batches, "seconds": seconds, "batch_s_median": statistics.median(gaps),
            "pairs_per_s": pairs / seconds, "images_per_s": images / seconds, "images_per_pair": images / pairs,
            "train_images": len(dm.train_pairs().base)}


def loader_result(loader: list[dict], step_images_per_s: float) -> dict:
    """The best worker count, and which side bounds training. `step_images_per_s`: the step's rate in its
    own count (2 images per pair)."""
    best = max(loader, key=lambda r: r["pairs_per_s"])
    step_pairs = step_images_per_s / 2
    ratio = best["pairs_per_s"] / step_pairs
    bound = "loader" if ratio < 1 else "step"
    per_pair = best["images_per_pair"]
    verdict = (f"the {bound} bounds training: the loader's best ({best['workers']} worker"
               f"{'' if best['workers'] == 1 else 's'}) delivers "
               f"{best['pairs_per_s']:,.1f} pairs/s, {ratio:,.2f} times the {step_pairs:,.1f} pairs/s the step "
               f"consumes ({step_pairs * per_pair:,.0f} loader images/s at {per_pair:g} images per pair)")
    return {"best_workers": best["workers"], "loader_pairs_per_s": best["pairs_per_s"],
            "loader_images_per_s": best["images_per_s"], "step_images_per_s": step_images_per_s,
            "step_pairs_per_s": step_pairs, "bound": bound, "loader_over_step": ratio, "verdict": verdict}


def data_summary(r: dict[str, Any]) -> str:
    workers = " / ".join(str(x["workers"]) for x in r["loader"])
    pairs = " / ".join(f"{x['pairs_per_s']:,.1f}" for x in r["loader"])
    images = " / ".join(f"{x['images_per_s']:,.0f}" for x in r["loader"])
    load = f"{r['machine'].get('load_1min_start', '?')}→{r['machine']['load_1min']}"
    return (f"{r['preset']} {r['image_size']} px, batch {r['batch_images']} ({r['batch_pairs']} pairs), "
            f"{r['dataset']} {r['data']} ({r['train_images']:,} training images): loader with {workers} workers "
            f"{pairs} pairs/s ({images} images/s, {r['images_per_pair']:g} per pair); step "
            f"{r['step_images_per_s']:,.1f} images/s = {r['step_pairs_per_s']:,.1f} pairs/s ({r['step_source']}); "
            f"{r['verdict']}; load {load}")
