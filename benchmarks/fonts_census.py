"""Census of a font folder as the `fonts` dataset sees it: what each rule removes, what is kept, the split,
and what rendering and the readability rule cost.

    apt-get install -y fonts-aenigma              # Debian's 465 display typefaces, the benchmark's set
    python benchmarks/fonts_census.py             # /usr/share/fonts/truetype/aenigma at 32 px
    python benchmarks/fonts_census.py DIR --size 64 --sheet census.png --json census.json

Runs with an empty cache (a temporary G2G_CACHE_DIR) unless --cache, so both timings are cold: rendering
every font, then the readability rule's 5 classifier fits (on CUDA when available, else CPU with --threads
threads). --sheet writes a picture: rows of fonts kept, removed by the readability rule, and skipped as
duplicates, each row the whole charset.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

AENIGMA = "/usr/share/fonts/truetype/aenigma"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=AENIGMA, help="font folder (any depth)")
    parser.add_argument("--size", type=int, default=32, help="image side in px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the classifier (0: torch's default)")
    parser.add_argument("--cache", action="store_true", help="use the user's cache instead of an empty one")
    parser.add_argument("--sheet", help="write a PNG of example fonts here")
    parser.add_argument("--json", help="write the census and timings here")
    args = parser.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"no font folder at {args.root}" + (" (apt-get install -y fonts-aenigma)" if args.root == AENIGMA
                                                 else ""), file=sys.stderr)
        return 1
    if not args.cache:
        os.environ["G2G_CACHE_DIR"] = tempfile.mkdtemp(prefix="g2g-fonts-census-")
    import torch

    from g2g.data import fonts
    if args.threads:
        torch.set_num_threads(args.threads)
    faces = fonts.font_faces(args.root)
    files = len({f for f, _ in faces})
    start = time.perf_counter()
    fonts.render_folder(faces, fonts.CHARSET, args.size, judge=False)
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    fonts.render_folder(faces, fonts.CHARSET, args.size, judge=True)  # the renders come from the cache now
    judge_s = time.perf_counter() - start
    train = fonts.FontsDataset(args.root, "train", args.size, args.seed)
    test = fonts.FontsDataset(args.root, "test", args.size, args.seed)
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    census = {**train.census, "files": files, "render_s": round(render_s, 1), "judge_s": round(judge_s, 1),
              "judge": fonts.JUDGE, "device": device}
    _print(census, train, test)
    if args.json:
        Path(args.json).write_text(json.dumps(census, indent=1) + "\n")
    if args.sheet:
        _sheet(args.sheet, faces, train, args.size)
    return 0


def _print(census: dict, train, test) -> None:
    c = census
    print(f"folder: {train.root}  ({c['files']} files, {c['fonts']} fonts)  at {train.size} px")
    print(f"skipped: {sum(c['skipped'].values())}  " + ", ".join(f"{r}: {n}" for r, n in c["skipped"].items()))
    print(f"removed by the readability rule: {c['unreadable']}  (read < 50 % by a classifier of other families)")
    print(f"kept: {c['kept'][0]} fonts in {c['kept'][1]} family groups")
    print(f"split (seed {train.seed}): train {c['train'][0]} fonts / {c['train'][1]} groups; held out "
          f"{c['heldout'][0]} fonts / {c['heldout'][1]} groups ({c['heldout'][0] / c['kept'][0]:.0%} of the fonts)")
    print(f"images: train {len(train)}, test {len(test)}  ({len(train.charset)} characters each font)")
    print(f"time: render {c['render_s']} s, readability rule {c['judge_s']} s on {c['device']}")


def _sheet(path: str, faces, train, size: int, rows: int = 8) -> None:
    """Example fonts, one row each: kept (training), removed by the readability rule, skipped as duplicates."""
    import numpy as np
    import torch
    from torchvision.utils import save_image

    from g2g.data import fonts
    by_id = {fonts.face_id(f): f for f in faces}
    picked = [fonts.face_id(f) for f in train.fonts[:rows]] + train.unreadable[:rows]
    grey = [fonts.render_grey(by_id[i][0], fonts.CHARSET, size, by_id[i][1]) for i in picked]
    for face_id in train.skipped_fonts.get("duplicate glyphs", [])[:rows]:  # drawn without the refusal
        grey.append(np.stack([fonts.render_grey(by_id[face_id][0], c, size, by_id[face_id][1])[0]
                              for c in fonts.CHARSET]))
    images = torch.from_numpy(np.stack(grey)).flatten(0, 1).unsqueeze(1).float() / 255
    save_image(images, path, nrow=len(fonts.CHARSET), pad_value=0.5)
    print(f"sheet: {path} (rows: {min(rows, len(train.fonts))} kept, {min(rows, len(train.unreadable))} unreadable, "
          f"{len(grey) - len(picked)} duplicates drawn one character at a time)")


if __name__ == "__main__":
    sys.exit(main())
