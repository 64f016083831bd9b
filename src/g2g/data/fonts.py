"""Fonts as a labelled image dataset: the class is the typeface, the content is the character.

Rendering (`render`), one convention for every font: white ink (+1) on black (-1), as `digits`, grey in
3 channels. The characters of one call share one baseline and one scale, chosen so that their ink together
spans 80 % of the image side (highest ascender to lowest descender, or the widest glyph if wider); each
glyph is centred horizontally on its ink and the set's ink vertically, so 'x' sits on the baseline and 'o'
stays smaller than 'O'. FreeType draws (antialiased) at 4× the size; a box filter brings it down. An image
thus depends on the set it was rendered with: the dataset always renders its whole charset.
Rules (`FontsDataset`): a font is skipped, and counted by reason, when `render` refuses it: the file is not
a font, a character has no glyph (it renders the font's .notdef glyph), a glyph is blank, or two characters
render the same image up to antialiasing (a capitals-only font drawing 'a' as 'A'). The readability rule
then removes fonts whose glyphs do not read as their characters (pictures, textures, symbols): a character
classifier trained on the fonts of other family groups must read at least half of the font's glyphs
(`read_fractions`; its arithmetic differs a little between CPUs, so a font read by about half can fall on
either side: aenigma lost 47 or 49 on two machines with identical renders). Splits hold whole family groups."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import string
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from ..files import atomic_write
from .files import check_size, check_split
from .index import cache_dir

log = logging.getLogger(__name__)

CHARSET = string.ascii_uppercase + string.ascii_lowercase  # A–Z a–z
FONT_EXTENSIONS = (".ttf", ".otf", ".ttc")
INK_FRACTION = 0.8     # the set's ink spans this share of the image side
SUPERSAMPLE = 4        # glyphs are drawn at 4× the image size, then box-filtered down
ABSENT = "\U0010fffd"  # a code point no font maps (last of plane 16): it shows the font's .notdef glyph
DUPLICATE_LEVELS = 32  # images this close (grey levels of 255) at every pixel: one drawing, antialiased apart
RENDER_VERSION = 2     # part of every cache key: change it when the convention or a rule changes
READ_THRESHOLD = 0.5   # a font is readable when the judge reads at least this share of its glyphs
# the readability rule's judge (`read_fractions`): 5 CNN fits, about 2 min on one CPU thread for 340 fonts
JUDGE = {"folds": 5, "steps": 1000, "batch_size": 64, "size": 32, "seed": 0}


class FontError(ValueError):
    """A font that cannot render the charset; `reason` names the rule it broke (for counting)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _name(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X})"


def load_font(font_file: str | Path, em: float, index: int = 0) -> ImageFont.FreeTypeFont:
    """The face `index` of a font file at an em size of `em` px; FontError naming the file if unreadable."""
    if not Path(font_file).is_file():
        raise FileNotFoundError(f"font file not found: {font_file}")
    try:
        return ImageFont.truetype(str(font_file), size=max(1.0, em), index=index,
                                  layout_engine=ImageFont.Layout.BASIC)
    except (OSError, ValueError) as e:
        raise FontError(f"cannot read font {font_file} (face {index}): {' '.join(str(e).split()) or type(e).__name__}"
                        " (not a TrueType/OpenType font, or corrupt)", "unreadable file") from e


def _glyph(font: ImageFont.FreeTypeFont, ch: str) -> tuple[np.ndarray, int] | None:
    """The glyph's ink: (bitmap (h, w) uint8 cut to the ink, its top row relative to the baseline), or None."""
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls")  # layout box around the pen position
    pad = 2  # px of margin, should the ink spill over the layout box
    canvas = Image.new("L", (int(x1 - x0) + 2 * pad, int(y1 - y0) + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), ch, fill=255, font=font, anchor="ls")
    box = canvas.getbbox()
    return None if box is None else (np.asarray(canvas.crop(box)), int(box[1] + y0 - pad))


def _draw_all(font_file: str | Path, index: int, chars: str, em: float) -> list[tuple[np.ndarray, int]]:
    """Every character's ink at em size `em`; FontError for a blank glyph or one drawn as .notdef."""
    font = load_font(font_file, em, index)
    notdef = _glyph(font, ABSENT)
    glyphs = []
    for ch in chars:
        g = _glyph(font, ch)
        if g is None:
            raise FontError(f"font {font_file}: {_name(ch)} is blank (no ink; the font may lack it)", "blank glyph")
        if notdef is not None and g[0].shape == notdef[0].shape and np.array_equal(g[0], notdef[0]):
            raise FontError(f"font {font_file}: no glyph for {_name(ch)} (it renders the font's .notdef glyph)",
                            "missing glyph")
        glyphs.append(g)
    return glyphs


def _extent(glyphs: list[tuple[np.ndarray, int]]) -> tuple[int, int, int]:
    """(top, bottom, widest) of a set of glyphs: the set's ink rows relative to the baseline, widest ink."""
    return (min(t for _, t in glyphs), max(t + g.shape[0] for g, t in glyphs), max(g.shape[1] for g, _ in glyphs))


def render_grey(font_file: str | Path, chars: str = CHARSET, size: int = 32, index: int = 0) -> np.ndarray:
    """`render`'s images as 8-bit grey levels, ink 255 on 0.  # (len(chars), size, size) uint8"""
    check_size(size, 8)
    if not chars:
        raise ValueError("chars is empty: give at least one character to render")
    canvas = SUPERSAMPLE * size
    probe = float(canvas)  # measure the set at an em of the canvas side, then scale the em to fit
    top, bottom, widest = _extent(_draw_all(font_file, index, chars, probe))
    glyphs = _draw_all(font_file, index, chars, probe * INK_FRACTION * canvas / max(bottom - top, widest))
    top, bottom, _ = _extent(glyphs)
    baseline = (canvas - (bottom - top)) // 2 - top  # the set's ink centred vertically
    out = np.zeros((len(chars), canvas, canvas), np.float32)
    for k, (ink, t) in enumerate(glyphs):
        h, w = ink.shape
        y, x = baseline + t, (canvas - w) // 2  # each glyph centred horizontally on its own ink
        ys, xs = slice(max(y, 0), min(y + h, canvas)), slice(max(x, 0), min(x + w, canvas))
        out[k, ys, xs] = ink[ys.start - y: ys.stop - y, xs.start - x: xs.stop - x]
    # box filter: each output pixel is the mean of its SUPERSAMPLE × SUPERSAMPLE block
    grey = np.rint(out.reshape(len(chars), size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4)))
    flat = grey.reshape(len(chars), -1)  # (N, size²) grey levels
    for k in range(1, len(chars)):  # row by row: all pairs at once would hold C² images
        same = np.flatnonzero(np.abs(flat[:k] - flat[k]).max(1) <= DUPLICATE_LEVELS)
        if len(same):  # e.g. a capitals-only font drawing 'a' as 'A'
            raise FontError(f"font {font_file}: {_name(chars[k])} renders the same image as {_name(chars[same[0]])}",
                            "duplicate glyphs")
    return grey.astype(np.uint8)  # (N, size, size)


def render(font_file: str | Path, chars: str = CHARSET, size: int = 32, index: int = 0) -> torch.Tensor:
    """`chars` in face `index` of a font file, by the module's convention.  # (len(chars), 3, size, size)

    Values in [-1, 1]. A ValueError (FontError, with `reason`) names the file and the character when the
    file is not a font, or a character has no glyph, a blank one or the image of another character."""
    grey = torch.from_numpy(render_grey(font_file, chars, size, index)).float() / 127.5 - 1.0
    return grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()  # (N, 3, size, size)


# --- A folder of fonts -----------------------------------------------------------------------------


def font_faces(root: str | Path) -> list[tuple[str, int]]:
    """(file, face index) of every font under root (FONT_EXTENSIONS, any depth, hidden files and folders
    left out), sorted by path; a .ttc collection gives one entry per face (numFonts of its 'ttcf' header)."""
    root, faces = Path(root), []
    for p in sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_EXTENSIONS and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)):
        with open(p, "rb") as f:
            head = f.read(12)
        count = struct.unpack(">I", head[8:])[0] if len(head) == 12 and head[:4] == b"ttcf" else 1
        faces += [(str(p), i) for i in range(max(1, min(count, 256)))]  # a damaged header cannot ask for more
    return faces


def face_id(face: tuple[str, int]) -> str:
    """'path/to/font.ttf', or 'path/to/fonts.ttc#2' for a face of a collection."""
    return f"{face[0]}#{face[1]}" if face[0].lower().endswith(".ttc") else face[0]


def font_name(face: tuple[str, int]) -> tuple[str, str]:
    """(family, style) as the font names itself (Pillow's `getname`); the file name when it does not."""
    family, style = load_font(face[0], 10, face[1]).getname()
    return family or Path(face[0]).stem, style or ""


def family_group(family: str) -> str:
    """The split's group key: the family name's first word, case-folded, punctuation removed ('8-bit Limit O
    BRK' → '8bit'). Variants that a foundry ships as separate families ('Foreshadow BRK', 'Foreshadow OL
    BRK'; 'DejaVu Sans', 'DejaVu Sans Mono') share it; designs named independently ('cmr10', 'cmb10') do not."""
    words = [re.sub(r"[\W_]", "", w) for w in family.casefold().split()]
    return next((w for w in words if w), family.casefold())


def render_folder(faces: list[tuple[str, int]], chars: str, size: int, judge: bool) -> tuple[np.ndarray, dict]:
    """(renders (U, C, size, size) uint8 of the usable faces, {"usable": [bool] * F, "failed": {reason: [face
    ids]}, "fractions" (with judge): `read_fractions` of the usable faces}). Cached in cache_dir()/fonts while
    no font file changes (path, size and mtime are in the key): a folder's kept fonts stay fixed."""
    files = [(f, i, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f, i in faces]
    key = json.dumps(["fonts", RENDER_VERSION, JUDGE, chars, size, files]).encode()
    path = cache_dir() / "fonts" / hashlib.sha256(key).hexdigest()[:32]
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        grey = np.load(path.with_suffix(".npy"), allow_pickle=False)
        if len(meta["usable"]) != len(faces) or grey.shape != (sum(meta["usable"]), len(chars), size, size):
            raise ValueError("a cache entry of other fonts")
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: render again
        meta, grey = _render_all(faces, chars, size)
        _store(path, grey, meta)
    if judge and "fractions" not in meta and len(grey):
        usable = [f for f, u in zip(faces, meta["usable"]) if u]
        meta["fractions"] = read_fractions(grey, [family_group(font_name(f)[0]) for f in usable], **JUDGE).tolist()
        _store(path, None, meta)
    return grey, meta


def _render_all(faces: list[tuple[str, int]], chars: str, size: int) -> tuple[dict, np.ndarray]:
    meta: dict = {"usable": [], "failed": {}}
    renders = [np.zeros((0, len(chars), size, size), np.uint8)]
    for face in faces:
        try:
            renders.append(render_grey(face[0], chars, size, face[1])[None])  # (1, C, size, size)
            meta["usable"].append(True)
        except FontError as e:
            meta["usable"].append(False)
            meta["failed"].setdefault(e.reason, []).append(face_id(face))
    return meta, np.concatenate(renders)


def _store(path: Path, array: np.ndarray | None, meta: dict) -> None:
    """Write a cache entry (the array first: the JSON file marks it complete); a read-only cache is no error."""
    try:
        if array is not None:
            np.save(buffer := io.BytesIO(), array, allow_pickle=False)
            atomic_write(path.with_suffix(".npy"), lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    except OSError as e:
        log.info("font renders not cached (%s); set G2G_CACHE_DIR to a writable folder to cache them", e)


def read_fractions(grey: np.ndarray, groups: list[str], folds: int = 5, steps: int = 1000, batch_size: int = 64,
                   size: int = 32, seed: int = 0) -> np.ndarray:
    """Per font, the share of its glyphs that a character classifier trained on the fonts of other family
    groups reads as their character.  # (F,) float in [0, 1]

    grey: renders (F, C, H, W) uint8; groups: each font's family group. The groups are dealt into `folds`
    folds (seeded); per fold, a small CNN (`evaluation.metrics.train_classifier`: `steps` Adam steps of
    `batch_size` glyphs at `size` px) learns the C characters from the other folds and reads the fold's
    glyphs. On CUDA when available."""
    from ..evaluation.metrics import classify, train_classifier  # a judge of the data, as in evaluation
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(f"the readability rule needs fonts of at least 2 family groups (each is read by a classifier "
                         f"trained on the others), got {len(names)}: add fonts of other families")
    n_fonts, n_chars = grey.shape[:2]
    rank = np.random.default_rng(seed).permutation(len(names))  # group → its place in a seeded deal
    fold = torch.from_numpy(rank[[names.index(g) for g in groups]] % min(folds, len(names))).repeat_interleave(n_chars)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(grey).to(device).flatten(0, 1).unsqueeze(1).float() / 127.5 - 1  # (F·C, 1, H, W)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)  # same size: as is
    chars = torch.arange(n_chars, device=device).repeat(n_fonts)  # (F·C,) the character of each glyph
    read = torch.zeros(len(x), dtype=torch.bool, device=device)
    for k in range(min(folds, len(names))):
        held = (fold == k).to(device)
        judge = train_classifier(x[~held], chars[~held], n_chars, epochs=steps, batch_size=batch_size,
                                 seed=seed + k, max_steps=steps)  # exactly `steps` steps, however few fonts
        read[held] = classify(judge, x[held]) == chars[held]
    return read.view(n_fonts, n_chars).float().mean(1).cpu().numpy()


def split_fonts(groups: list[str], fraction: float, seed: int, counted: np.ndarray) -> np.ndarray:
    """Held-out fonts (F,) bool: whole family groups, drawn in a seeded order until they hold at least
    `fraction` of all fonts and of the `counted` ones (the kept fonts; F bool)."""
    names = sorted(set(groups))
    of = np.array([names.index(g) for g in groups])
    held = np.zeros(len(groups), bool)
    for g in np.random.default_rng(seed).permutation(len(names)):
        if held.mean() >= fraction and held[counted].sum() >= fraction * counted.sum():
            break
        held |= of == g
    if not held[counted].any() or held[counted].all():
        raise ValueError(f"cannot hold out {fraction:.0%} of the fonts by family group and train on the rest: "
                         f"{len(names)} family group(s) ({', '.join(names[:5])}); add fonts of other families")
    return held


class FontsDataset(Dataset):
    """Every font under a folder (.ttf, .otf, .ttc, any depth): one image per font and character of the
    charset, labelled with the font (class names: the fonts' names). Skipped fonts by reason: `skipped_fonts`;
    removed by the readability rule (readable_only): `unreadable`; all counts: `census`. 'train' holds the
    training fonts; 'val' and 'test' both hold the held-out fonts (whole family groups drawn by seed, at least
    held_out_fraction of the fonts), classes the model never saw. `chars` (N,) is each image's character
    (an index into `charset`) for evaluation only, as is `lookup` (the true swap); training reads `images`
    (held in memory, grey repeated to 3 channels by a view) and `labels` only.
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 32, seed: int = 0, charset: str = CHARSET,
                 held_out_fraction: float = 0.1, readable_only: bool = True):
        check_split(split)
        check_size(size, 8)
        if not 0.1 <= held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in [0.1, 1), got {held_out_fraction}")
        if not charset or len(set(charset)) != len(charset):
            raise ValueError(f"charset must be distinct characters, got {charset!r}")
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root} is a file; expected a folder of font files") if root.exists() else (
                FileNotFoundError(f"font folder not found: {root}"))
        faces = font_faces(root)
        if not faces:
            raise ValueError(f"no font files ({', '.join(FONT_EXTENSIONS)}) under {root}")
        grey, meta = render_folder(faces, charset, size, readable_only)
        self.skipped_fonts: dict[str, list[str]] = meta["failed"]  # reason → font files (face ids)
        self.census = {"fonts": len(faces), "skipped": {r: len(v) for r, v in sorted(self.skipped_fonts.items())}}
        faces = [f for f, u in zip(faces, meta["usable"]) if u]
        names = [font_name(f) for f in faces]
        groups = [family_group(family) for family, _ in names]
        readable = np.array(meta.get("fractions", [])) >= READ_THRESHOLD if readable_only else np.ones(len(faces), bool)
        self.unreadable = [face_id(f) for f, r in zip(faces, readable) if not r]
        self.census["unreadable"] = len(self.unreadable)
        if not readable.any():
            raise ValueError(f"no usable fonts under {root}: {census_line(self.census)}")
        held = split_fonts(groups, held_out_fraction, seed, readable)
        for part, fonts in (("kept", readable), ("train", readable & ~held), ("heldout", readable & held)):
            self.census[part] = [int(fonts.sum()), len({g for g, f in zip(groups, fonts) if f})]  # fonts, groups
        chosen = np.flatnonzero(readable & (held if split != "train" else ~held))  # (n,) this split's fonts
        self.fonts = [faces[i] for i in chosen]                                    # (file, face index)
        self.groups = [groups[i] for i in chosen]
        self.class_names = _unique_names([names[i] for i in chosen], self.fonts)
        self.num_classes, self.charset, n = len(chosen), charset, len(charset)
        pixels = torch.from_numpy(grey[chosen]).flatten(0, 1).unsqueeze(1)        # (n·C, 1, size, size) uint8
        self.images = (pixels.float() / 127.5 - 1).expand(-1, 3, -1, -1)          # (N, 3, size, size) view
        self.labels = torch.arange(len(chosen)).repeat_interleave(n)              # (N,) font
        self.chars = torch.arange(n).repeat(len(chosen))                          # (N,) character
        self.root, self.split, self.size, self.seed = root, split, size, seed
        left_out = len(faces) < len(meta["usable"]) or bool(self.unreadable)
        log.log(logging.WARNING if left_out else logging.INFO, "fonts under %s: %s; split %r: %d fonts", root,
                census_line(self.census), split, len(chosen))

    def lookup(self, labels: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
        """The renders of characters `chars` in fonts `labels` (both (B,) long).  # (B, 3, size, size)"""
        return self.images[torch.as_tensor(labels) * len(self.charset) + torch.as_tensor(chars)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def census_line(census: dict) -> str:
    """FontsDataset.census in one line."""
    reasons = ", ".join(f"{r} {n}" for r, n in census["skipped"].items()) or "none"
    line = (f"{census['fonts']} fonts, {sum(census['skipped'].values())} skipped ({reasons}), "
            f"{census['unreadable']} unreadable (read < {READ_THRESHOLD:.0%})")
    if "kept" in census:
        (kept, groups), (train, train_groups), (held, held_groups) = census["kept"], census["train"], census["heldout"]
        line += (f", {kept} kept in {groups} family groups: {train} training fonts ({train_groups} groups), "
                 f"{held} held out ({held_groups} groups)")
    return line


def _unique_names(names: list[tuple[str, str]], faces: list[tuple[str, int]]) -> list[str]:
    """'Family Style' (style left out when regular), with the file name added where two fonts share one."""
    plain = [family if style.casefold() in ("regular", "normal", "book", "roman", "") else f"{family} {style}"
             for family, style in names]
    return [p if plain.count(p) == 1 else f"{p} ({Path(face_id(f)).name})" for p, f in zip(plain, faces)]
