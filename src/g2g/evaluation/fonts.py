"""Fonts: every swap has a true image. m1 = G(content code of x1, class code of x2) should be x1's
character c1 in x2's font f2, and the dataset holds that render, lookup(f2, c1).

Per split (pairs among the training fonts, pairs among the held-out fonts), on seeded pairs (x1, x2) of
different fonts: swap PSNR, SSIM and L1 against the true render; character kept (an independent
character classifier reads m1 as c1); font transferred (an independent font classifier of the split's
fonts reads m1 as f2); copy-through (m1 nearer x1 than the true render). K-shot class codes average the
class codes of x2 and K − 1 other glyphs of f2, never the answer lookup(f2, c1). Baselines on the same
pairs: copy x1; the mean glyph of c1 over the training fonts (f2 left out); retrieval, the training font
(not f2) whose glyphs of the K reference characters are nearest the references, drawing c1. Redrawn: x1's
content code with the K-shot class code of its own font (other glyphs of f1): whether the model can draw
its own characters back at all, the reference its swaps are measured against.

The charset is halved by seed: the font judges learn each font from the glyphs of the first half, and
c1 comes from the other half, so no true answer is in a judge's training set. The character judge learns
the characters from every glyph of the training fonts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from . import metrics as M
from .font_codes import content_probes
from .intervals import bootstrap_ci, bootstrap_ratio_ci
from .stream import chunk_size

SPLITS = ("training fonts", "held-out fonts")
K_SHOTS = (1, 8)
# Adam steps of each judge (batch 32): about 40 s on one CPU thread at 32 px
JUDGE_STEPS = 2000
JUDGE_PX = 32  # judges read glyphs at most this many px a side (downsized, antialiased)
PER_PAIR = ("psnr", "ssim", "l1", "character_kept", "font_transferred", "copy_through")
REDRAWN = ("psnr", "ssim", "l1", "character_kept", "font_kept")  # the redrawn x1, judged against x1


@dataclass
class FontJudges:
    """The independent judges of a fonts evaluation, fitted once (`fit_font_judges`) for many models."""

    character: nn.Module               # reads any glyph's character (an index into the charset)
    fonts: dict[str, nn.Module]        # split name → reads a glyph's font among the split's fonts
    pair_chars: torch.Tensor           # (C − C // 2,) characters of c1, never seen by a font judge
    accuracy: dict[str, float]         # on real glyphs the judge did not learn from
    steps: int


def _judge_view(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] > JUDGE_PX:
        x = F.interpolate(x, size=(JUDGE_PX, JUDGE_PX), mode="bilinear", antialias=True, align_corners=False)
    return x


def _read(judge: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The judge's class of each (N, 3, H, W) image.  # (N,) long"""
    return M.classify(judge, _judge_view(x))


def _fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int, steps: int, device) -> nn.Module:
    x = _judge_view(x).to(device)
    return M.train_classifier(x, y.to(device), n_classes, epochs=steps, seed=seed, max_steps=steps)


def fit_font_judges(train_ds, test_ds, seed: int = 0, steps: int = JUDGE_STEPS, device=None) -> FontJudges:
    """The character judge (every glyph of the training fonts, labelled with its character) and one font
    judge per split (the glyphs of a seeded half of the charset), with their accuracies on real glyphs
    they did not learn from: the held-out fonts' glyphs (character), the other half's (fonts). Datasets
    as `g2g.data.fonts.FontsDataset` (images, labels, chars, num_classes, charset). On CUDA if present."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    n_chars = len(train_ds.charset)
    order = torch.randperm(n_chars, generator=torch.Generator().manual_seed(seed))
    learnt, pair_chars = order[:n_chars // 2].sort().values, order[n_chars // 2:].sort().values
    character = _fit(train_ds.images, train_ds.chars, n_chars, seed, steps, device)
    accuracy = {"character": (_read(character, test_ds.images) == test_ds.chars).float().mean().item()}
    fonts = {}
    for k, (name, ds) in enumerate(zip(SPLITS, (train_ds, test_ds))):
        seen = torch.isin(ds.chars, learnt)
        fonts[name] = _fit(ds.images[seen], ds.labels[seen], ds.num_classes, seed + 1 + k, steps, device)
        accuracy[name] = (_read(fonts[name], ds.images[~seen]) == ds.labels[~seen]).float().mean().item()
    return FontJudges(character, fonts, pair_chars, accuracy, steps)


def font_pairs(num_fonts: int, num_chars: int, n: int, seed: int, chars: torch.Tensor | None = None,
               k: int = max(K_SHOTS)) -> dict[str, torch.Tensor]:
    """n seeded pairs: fonts f1 ≠ f2 (n,), c1 (n,) drawn from `chars` (default all), and refs (n, k): the
    characters of f2's reference glyphs, distinct and never c1 (refs[:, 0] is x2's character)."""
    if num_fonts < 2 or num_chars < k + 1:
        raise ValueError(f"pairs of different fonts with {k} references need 2 fonts and {k + 1} characters, "
                         f"got {num_fonts} fonts and {num_chars} characters")
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randint(num_fonts, (n,), generator=g)
    f2 = (f1 + torch.randint(1, num_fonts, (n,), generator=g)) % num_fonts  # uniform among the other fonts
    pool = torch.arange(num_chars) if chars is None else torch.as_tensor(chars)
    c1 = pool[torch.randint(len(pool), (n,), generator=g)]
    keys = torch.rand(n, num_chars, generator=g)
    keys[torch.arange(n), c1] = 2.0  # the answer's character sorts last: never a reference
    return {"f1": f1, "f2": f2, "c1": c1, "refs": keys.argsort(1)[:, :k]}


def _glyphs_of(ds, fonts: torch.Tensor, c: int) -> torch.Tensor:
    return ds.lookup(fonts, torch.full_like(fonts, c))


def _baseline_tables(train_ds, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """Per character: the sum of the training fonts' glyphs (C, 3, H, W), and the squared L2 distance of
    each glyph of the split's fonts to the training fonts' glyph of that character (C, F, G). One
    character at a time, so memory is bounded by one character's glyphs."""
    train_fonts, fonts = torch.arange(train_ds.num_classes), torch.arange(ds.num_classes)
    sums, dist = [], []
    for c in range(len(train_ds.charset)):
        mine, theirs = _glyphs_of(ds, fonts, c), _glyphs_of(train_ds, train_fonts, c)
        sums.append(theirs.sum(0))
        dist.append(torch.cdist(mine.flatten(1), theirs.flatten(1)).square())  # (F, G)
    return torch.stack(sums), torch.stack(dist)


def _baselines(train_ds, pairs: dict, tables, k_shots, x1, same: bool) -> dict[str, torch.Tensor]:
    """Baseline mixed images of a chunk of pairs; same: the split's fonts are the training fonts."""
    sums, dist = tables
    f2, c1 = pairs["f2"], pairs["c1"]
    out = {"copy x1": x1}
    if same:  # f2 is one of the fonts summed: leave it out
        out["mean glyph"] = (sums[c1] - train_ds.lookup(f2, c1)) / (train_ds.num_classes - 1)
    else:
        out["mean glyph"] = sums[c1] / train_ds.num_classes
    d = dist[pairs["refs"], f2[:, None]].cumsum(1)  # (n, K, G): summed over the first K references
    if same:
        d[torch.arange(len(f2)), :, f2] = float("inf")
    for k in k_shots:
        out[f"retrieval {k}-shot"] = train_ds.lookup(d[:, k - 1].argmin(1), c1)
    return out


def _centred(model) -> bool:
    """The model centres content codes on other images of their class (`content_centre`)."""
    return bool(getattr(getattr(model, "generator", None), "centred", False))


def _content(model, x: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor:
    """Content codes of x, centred on `own` (other glyphs of each one's font) where the model is centred."""
    if own is not None and _centred(model):
        return model.encode(x, own)[0]
    return model.encode(x)[0]


def _class_codes(model, refs: torch.Tensor) -> torch.Tensor:
    """Class codes of refs (n, K, 3, H, W), each encoded once.  # (n, K, D)"""
    return model.encode_class(refs.flatten(0, 1)).unflatten(0, refs.shape[:2])


@torch.no_grad()
def _model_swaps(model, x1: torch.Tensor, refs: torch.Tensor, k_shots, own: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """m1 with the mean class code of the first K of refs (n, K, 3, H, W); own (n, K', 3, H, W): other
    glyphs of x1's font, on which a centred model centres x1's content code and whose mean class code
    draws x1 again ("redrawn")."""
    content = _content(model, x1, own)
    codes = _class_codes(model, refs)
    out = {f"model {k}-shot": model.decode(content, codes[:, :k].mean(1)).cpu().float() for k in k_shots}
    if own is not None:
        out["redrawn"] = model.decode(content, _class_codes(model, own).mean(1)).cpu().float()
    return out


def _scores(m: torch.Tensor, x1, true, pairs: dict, character: nn.Module, font: nn.Module) -> dict:
    """Per-pair numbers of one kind of mixed image.  # each (n,)"""
    out = M.per_image_metrics(m, true)
    out["character_read"] = _read(character, m)
    out["character_kept"] = (out["character_read"] == pairs["c1"]).float()
    out["font_transferred"] = (_read(font, m) == pairs["f2"]).float()
    out["copy_through"] = M.copy_through(m, x1, target=true).float()
    return out


def _redrawn_scores(m: torch.Tensor, x1, pairs: dict, character: nn.Module, font: nn.Module) -> dict:
    """Per-pair numbers of x1 redrawn from its own codes, against x1 and x1's font.  # each (n,)"""
    out = M.per_image_metrics(m, x1)
    out["character_read"] = _read(character, m)
    out["character_kept"] = (out["character_read"] == pairs["c1"]).float()
    out["font_kept"] = (_read(font, m) == pairs["f1"]).float()
    return out


def _misreadings(read: torch.Tensor, answer: torch.Tensor, readable: torch.Tensor, charset: str,
                 top: int = 5) -> list[list]:
    """The most frequent misreadings among the readable pairs: [[character, read as, count], …], most first."""
    wrong = (read != answer) & readable.bool()
    pairs, counts = torch.stack([answer[wrong], read[wrong]], 1).unique(dim=0, return_counts=True)
    order = sorted(range(len(counts)), key=lambda i: (-int(counts[i]), pairs[i].tolist()))[:top]
    return [[charset[int(pairs[i, 0])], charset[int(pairs[i, 1])], int(counts[i])] for i in order]


def _summary(values: dict[str, torch.Tensor], readable: torch.Tensor, seed: int,
             names: tuple[str, ...] = PER_PAIR) -> dict[str, Any]:
    """Mean and 95 % bootstrap interval of each per-pair metric, and character_kept_readable: character_kept
    among the pairs whose answer the character judge reads as c1 (`readable`, (n,) 0/1; a ratio of paired
    means)."""
    out: dict[str, Any] = {"answer_readable": readable.mean().item()}
    for name in names:
        v = values[name]
        out[name], out[f"{name}_ci95"] = v.mean().item(), list(bootstrap_ci(v, seed=seed))
    kept = values["character_kept"] * readable
    out["character_kept_readable"] = (kept.sum() / readable.sum().clamp_min(1)).item()
    out["character_kept_readable_ci95"] = list(bootstrap_ratio_ci(kept, readable, seed=seed))
    return out


def _split_scores(model, train_ds, ds, split: str, judges: FontJudges, n_pairs, seed, k_shots, baselines) -> dict:
    if ds.num_classes < 2:
        return {"skipped": f"{split}: {ds.num_classes} font; pairs of different fonts need 2"}
    pairs = font_pairs(ds.num_classes, len(ds.charset), n_pairs, seed, judges.pair_chars, max(k_shots))
    same = split == SPLITS[0]
    tables = _baseline_tables(train_ds, ds) if baselines else None
    chunk = chunk_size(int(ds.images.shape[-1]))
    per_pair: dict[str, dict[str, list]] = {}
    redrawn: dict[str, list] = {}
    readable, x1_readable = [], []  # the character judge reads the true render (x1) as c1: read once
    for a in range(0, n_pairs, chunk):
        p = {key: v[a:a + chunk] for key, v in pairs.items()}
        x1, true = ds.lookup(p["f1"], p["c1"]), ds.lookup(p["f2"], p["c1"])
        readable.append((_read(judges.character, true) == p["c1"]).float())
        mixed = {}
        if model is not None:
            own = ds.lookup(p["f1"][:, None], p["refs"])  # x1's font, never c1
            mixed = _model_swaps(model, x1, ds.lookup(p["f2"][:, None], p["refs"]), k_shots, own)
            x1_readable.append((_read(judges.character, x1) == p["c1"]).float())
            for key, v in _redrawn_scores(mixed.pop("redrawn"), x1, p, judges.character, judges.fonts[split]).items():
                redrawn.setdefault(key, []).append(v)
        if tables is not None:  # with the true renders themselves: what the judges read of real glyphs
            mixed.update({**_baselines(train_ds, p, tables, k_shots, x1, same), "true render": true})
        for row, m in mixed.items():
            for key, v in _scores(m, x1, true, p, judges.character, judges.fonts[split]).items():
                per_pair.setdefault(row, {}).setdefault(key, []).append(v)
    answers = torch.cat(readable)
    rows = {}
    for row, values in per_pair.items():
        cat = {k: torch.cat(v) for k, v in values.items()}
        rows[row] = {**_summary(cat, answers, seed),
                     "misread": _misreadings(cat["character_read"], pairs["c1"], answers, ds.charset)}
    out = {"pairs": n_pairs, "fonts": ds.num_classes, "rows": rows}
    if redrawn:
        cat, x1_answers = {k: torch.cat(v) for k, v in redrawn.items()}, torch.cat(x1_readable)
        out["redrawn"] = {**_summary(cat, x1_answers, seed, REDRAWN),
                          "misread": _misreadings(cat["character_read"], pairs["c1"], x1_answers, ds.charset)}
    return out


def font_swap_scores(model, train_ds, test_ds, n_pairs: int = 1000, seed: int = 0, k_shots=K_SHOTS,
                     judges: FontJudges | None = None, baselines: bool | None = None) -> dict:
    """Scores of true swaps among the training fonts and among the held-out fonts (see the module doc).

    model: a `G2GModel` (rows "model K-shot"), or None for the baselines only. baselines (default: when
    model is None): also the rows "copy x1", "mean glyph", "retrieval K-shot". judges: from
    `fit_font_judges(train_ds, test_ds, seed)`, fitted here when None. Each row: mean and 95 % bootstrap
    interval of psnr (dB, capped at 100), ssim, l1 ([0, 1] scale), character_kept, font_transferred and
    copy_through (fractions). Pairs depend on the seed and the judges' halves of the charset only: calls
    with one seed and one `judges` score the same pairs, whatever the model.
    """
    if n_pairs < 1 or not k_shots or min(k_shots) < 1:
        raise ValueError(f"n_pairs must be ≥ 1 and k_shots reference counts ≥ 1, got {n_pairs} and {k_shots}")
    start = time.monotonic()
    judges = judges or fit_font_judges(train_ds, test_ds, seed)
    baselines = model is None if baselines is None else baselines
    out: dict[str, Any] = {name: _split_scores(model, train_ds, ds, name, judges, n_pairs, seed, tuple(k_shots),
                                               baselines) for name, ds in zip(SPLITS, (train_ds, test_ds))}
    charset = train_ds.charset
    out["judges"] = {"accuracy": judges.accuracy, "steps": judges.steps,
                     "image_size": min(int(train_ds.images.shape[-1]), JUDGE_PX),
                     "pair_chars": "".join(charset[i] for i in judges.pair_chars)}
    if model is not None:
        out["content code"] = content_probes(model, train_ds, test_ds, seed)
    out["settings"] = {"n_pairs": n_pairs, "seed": seed, "k_shots": list(k_shots)}
    out["runtime_s"] = round(time.monotonic() - start, 1)
    return out


def fonts_section(model, root, size: int, seed: int, n_pairs: int, steps: int = JUDGE_STEPS, device=None) -> dict:
    """The fonts section of `g2g eval --data fonts`: the model and the baselines on the fonts under root,
    judged by judges fitted with `steps` steps on `device`."""
    from ..data.fonts import FontsDataset
    train_ds, test_ds = (FontsDataset(root, split, size, seed) for split in ("train", "test"))
    judges = fit_font_judges(train_ds, test_ds, seed, steps, device)
    return font_swap_scores(model, train_ds, test_ds, n_pairs, seed, K_SHOTS, judges, baselines=True)


def _as_uint8(grid: torch.Tensor) -> torch.Tensor:
    return grid.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)  # [-1, 1] → 0..255


def swap_panel(model, ds, n: int = 8, seed: int = 0) -> torch.Tensor:
    """n seeded pairs of different fonts as four rows: x1, x2, m1 with the 8-shot class code, the true
    render. # (3, H, W) uint8"""
    p = font_pairs(ds.num_classes, len(ds.charset), n, seed)
    x1, refs = ds.lookup(p["f1"], p["c1"]), ds.lookup(p["f2"][:, None], p["refs"])
    own = ds.lookup(p["f1"][:, None], p["refs"])  # x1's font, the same characters: never c1
    m1 = _model_swaps(model, x1, refs, (refs.shape[1],), own)[f"model {refs.shape[1]}-shot"]
    rows = torch.cat([x1, refs[:, 0], m1.clamp(-1, 1), ds.lookup(p["f2"], p["c1"])])
    return _as_uint8(make_grid(rows, nrow=n, pad_value=-1))


def font_char_grid(model, ds, fonts, chars: str, seed: int = 0, content_ds=None) -> torch.Tensor:
    """Each font of `fonts` (indices into ds's fonts) given by one glyph (a seeded character not in
    `chars`, first column) draws each of `chars` from one content image of that character, the same for
    every row (a seeded font of content_ds, e.g. the training fonts; default: a font of ds not in
    `fonts`). The first row shows the content images; a centred model centres each on 8 other glyphs of
    its font.  # (3, H, W) uint8"""
    fonts, g = torch.as_tensor(fonts), torch.Generator().manual_seed(seed)
    wanted = torch.tensor([ds.charset.index(ch) for ch in chars])
    source = ds if content_ds is None else content_ds
    candidates = torch.arange(source.num_classes)
    if content_ds is None:
        candidates = candidates[~torch.isin(candidates, fonts)]
    if not len(candidates):
        raise ValueError("no font left to take the content images from: give content_ds or fewer fonts")
    sources = candidates[torch.randint(len(candidates), (len(wanted),), generator=g)]
    contents = source.lookup(sources, wanted)
    others = torch.tensor([c for c in range(len(ds.charset)) if c not in wanted.tolist()] or range(len(ds.charset)))
    given = ds.lookup(fonts, others[torch.randint(len(others), (len(fonts),), generator=g)])  # (R, 3, H, W)
    own = others[torch.randperm(len(others), generator=g)[:max(K_SHOTS)]]  # other glyphs of each content's font
    with torch.no_grad():
        content = _content(model, contents, source.lookup(sources[:, None], own[None]))
        codes = model.encode_class(given)
        drawn = model.decode(content.repeat(len(fonts), *[1] * (content.dim() - 1)),
                             codes.repeat_interleave(len(wanted), 0)).cpu().float().clamp(-1, 1)
    rows = torch.cat([given[:, None], drawn.unflatten(0, (len(fonts), len(wanted)))], 1)  # (R, 1 + C, ...)
    top = torch.cat([torch.full_like(contents[:1], -1), contents])[None]
    return _as_uint8(make_grid(torch.cat([top, rows]).flatten(0, 1), nrow=1 + len(wanted), pad_value=-1))
