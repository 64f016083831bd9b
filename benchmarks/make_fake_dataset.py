"""A generated stand-in for a real dataset on disk, at full size or smaller: the files, layout and list
formats of CelebA or of a labelled image folder, with cheap synthetic pictures instead of photos.

    python benchmarks/make_fake_dataset.py OUT                             # CelebA layout, 202,599 files
    python benchmarks/make_fake_dataset.py OUT --n 2000                    # a smaller copy, same proportions
    python benchmarks/make_fake_dataset.py OUT --layout folder             # 100 classes, 20,000 files

celeba: OUT/img_align_celeba/000001.jpg … (178 × 218 JPEGs), OUT/list_eval_partition.txt (`<file> <0|1|2>`:
train, val, test in CelebA's proportions, 162,770 / 19,867 / 19,962 at full size, files in that order as in
CelebA) and OUT/identity_CelebA.txt (`<file> <identity>`: 8,192 / 985 / 1,000 identities at full size,
scaled with --n, disjoint across the partitions as in CelebA, about 20 images each). Reads with
`g2g.data.real.CelebADataset(OUT, split, size)`, i.e. `g2g train --data.dataset celeba --data.root OUT`.
folder: OUT/<class>/<file>.jpg, --classes folders (default 100) sharing --n images (default 20,000: 200 per
class, the order of Animal Faces' 117,574 images in 149 classes scaled to a quick copy). Reads with
`g2g.data.datasets.ImageFolderDataset(OUT)`, i.e. `--data.dataset folder --data.root OUT`.

A picture is a face-like shape on a gradient: each identity (class) has its own outline, colours and marks,
each image its own background, position, size and turn, so that the class is learnable from the image. Every
file is a pure function of (--seed, its index): the same bytes whatever --workers. JPEG quality 90, about
4 KB a file (see the rate and size printed at the end).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 178, 218  # CelebA aligned and cropped
CELEBA_SPLITS = (162_770, 19_867, 19_962)  # images per partition code 0, 1, 2
CELEBA_IDENTITIES = (8_192, 985, 1_000)  # identities per partition, 10,177 in all
CELEBA_N = sum(CELEBA_SPLITS)
FOLDER_N, FOLDER_CLASSES = 20_000, 100
CHUNK = 500  # files per task of the worker pool


# ---- the pictures ----

def _looks(seed: int, label: int) -> dict:
    """What every image of one identity (class) shares: outline (0 = ellipse, else polygon sides), colours,
    and where its marks sit."""
    rng = np.random.default_rng([seed, 1, label])
    return {"sides": int(rng.choice([0, 3, 4, 5, 6])), "fill": rng.integers(30, 226, 3),
            "mark": rng.integers(0, 256, 3), "eye_gap": rng.uniform(0.25, 0.5), "mouth": rng.uniform(0.2, 0.6),
            "aspect": rng.uniform(0.8, 1.3)}


def draw(seed: int, index: int, label: int) -> Image.Image:
    """Image `index` (of identity or class `label`): (HEIGHT, WIDTH) RGB."""
    looks = _looks(seed, label)
    rng = np.random.default_rng([seed, 2, index])
    corners = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)  # a bilinear gradient between 4 corner colours
    img = Image.fromarray(corners).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    cx, cy = WIDTH / 2 + rng.uniform(-15, 15), HEIGHT / 2 + rng.uniform(-15, 15)
    r = rng.uniform(45, 65)
    rx, ry = r, r * looks["aspect"]
    fill = tuple(int(v) for v in np.clip(looks["fill"] + rng.integers(-20, 21, 3), 0, 255))
    mark = tuple(int(v) for v in looks["mark"])
    d = ImageDraw.Draw(img)
    if looks["sides"]:
        turn = rng.uniform(-0.3, 0.3) + np.pi / 2
        angles = turn + 2 * np.pi * np.arange(looks["sides"]) / looks["sides"]
        d.polygon([(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles], fill=fill)
    else:
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)
    gap, eye = looks["eye_gap"] * rx, 0.12 * r
    for ex in (cx - gap, cx + gap):
        d.ellipse([ex - eye, cy - 0.25 * ry - eye, ex + eye, cy - 0.25 * ry + eye], fill=mark)
    half = looks["mouth"] * rx
    d.rectangle([cx - half, cy + 0.35 * ry, cx + half, cy + 0.35 * ry + 0.08 * r], fill=mark)
    return img


def _write_chunk(task: tuple[int, list[str], list[int], list[int]]) -> int:
    """Write one chunk of files; returns the bytes written."""
    seed, paths, indices, labels = task
    total = 0
    for path, index, label in zip(paths, indices, labels):
        draw(seed, index, label).save(path, "JPEG", quality=90)
        total += os.path.getsize(path)
    return total


# ---- the layouts ----

def _scaled(full: tuple[int, ...], n: int, minimum: int) -> list[int]:
    """`full` scaled to n / CELEBA_N, each at least `minimum`."""
    return [max(minimum, round(f * n / CELEBA_N)) for f in full]


def celeba_lists(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(file names, partition code per file, identity per file) of an n-file CelebA layout."""
    _, n_val, n_test = _scaled(CELEBA_SPLITS, n, 2)
    sizes = [n - n_val - n_test, n_val, n_test]
    ids = [min(k, size) for k, size in zip(_scaled(CELEBA_IDENTITIES, n, 2), sizes)]
    rng = np.random.default_rng([seed, 0])
    numbers = rng.permutation(sum(ids)) + 1  # identity numbers 1..total, shuffled, then cut per partition
    first = np.cumsum([0, *ids])
    identity = np.concatenate([rng.permutation(numbers[first[p]:first[p + 1]][np.arange(size) % ids[p]])
                               for p, size in enumerate(sizes)])  # every identity of a partition used, ~equal
    partition = np.repeat(np.arange(3), sizes)
    return [f"{i:06d}.jpg" for i in range(1, n + 1)], partition, identity


def layout_celeba(out: Path, n: int, seed: int) -> tuple[list[str], list[int]]:
    if n < 8:
        raise ValueError(f"--n must be at least 8 for the celeba layout (2 images in val and test), got {n}")
    names, partition, identity = celeba_lists(n, seed)
    (out / "img_align_celeba").mkdir(parents=True)
    (out / "list_eval_partition.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(names, partition)))
    (out / "identity_CelebA.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(names, identity)))
    return [str(out / "img_align_celeba" / name) for name in names], identity.tolist()


def layout_folder(out: Path, n: int, classes: int) -> tuple[list[str], list[int]]:
    if classes < 2 or n < classes:
        raise ValueError(f"the folder layout needs --classes >= 2 and --n >= --classes, got {classes} and {n}")
    labels = (np.arange(n) * classes // n).tolist()  # contiguous, equal blocks (±1) per class
    names = [f"c{c:03d}" for c in range(classes)]
    for name in names:
        (out / name).mkdir(parents=True)
    return [str(out / names[c] / f"{i:06d}.jpg") for i, c in enumerate(labels, 1)], labels


def generate(out: str | Path, layout: str = "celeba", n: int | None = None, classes: int = FOLDER_CLASSES,
             workers: int | None = None, seed: int = 0) -> dict:
    """Write the dataset into `out` (new or empty); returns {files, bytes, seconds, files_per_s, ...}."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new one")
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    if layout == "celeba":
        paths, labels = layout_celeba(out, CELEBA_N if n is None else n, seed)
    elif layout == "folder":
        paths, labels = layout_folder(out, FOLDER_N if n is None else n, classes)
    else:
        raise ValueError(f"--layout must be 'celeba' or 'folder', not {layout!r}")
    tasks = [(seed, paths[k:k + CHUNK], list(range(k + 1, k + 1 + len(paths[k:k + CHUNK]))), labels[k:k + CHUNK])
             for k in range(0, len(paths), CHUNK)]  # index = the file's number, from 1
    if workers == 1:
        written = sum(map(_write_chunk, tasks))
    else:
        with get_context("fork").Pool(workers) as pool:
            written = sum(pool.imap_unordered(_write_chunk, tasks))
    seconds = time.perf_counter() - start
    return {"out": str(out), "layout": layout, "files": len(paths), "classes": len(set(labels)), "bytes": written,
            "seconds": seconds, "files_per_s": len(paths) / seconds, "workers": workers}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--layout", default="celeba", choices=["celeba", "folder"])
    p.add_argument("--n", type=int, default=None,
                   help=f"number of images (default: {CELEBA_N:,} for celeba, {FOLDER_N:,} for folder)")
    p.add_argument("--classes", type=int, default=FOLDER_CLASSES, help="class folders (folder layout)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        r = generate(args.out, args.layout, args.n, args.classes, args.workers, args.seed)
    except ValueError as e:
        print(f"make_fake_dataset: error: {e}", file=sys.stderr)
        return 2
    full = CELEBA_N if args.layout == "celeba" else FOLDER_N
    print(f"{r['out']}: {r['files']:,} files ({r['classes']:,} classes), {r['bytes'] / 2 ** 20:,.1f} MiB, "
          f"{r['bytes'] / r['files'] / 1024:.1f} KiB/file, in {r['seconds']:.1f} s = {r['files_per_s']:,.0f} "
          f"files/s with {r['workers']} worker(s); {full:,} files would take {full / r['files_per_s'] / 60:.1f} min "
          f"and {full * r['bytes'] / r['files'] / 2 ** 30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
