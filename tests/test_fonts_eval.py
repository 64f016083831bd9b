"""The fonts evaluation: pairs and references that never show the answer, baselines against direct
computation, the scores of known models (the true render, a copy of x1) under perfect judges, fitted
judges, the picture helpers and the section of `g2g eval --data fonts`. Fonts: matplotlib's DejaVu and
STIX files (two family groups, so each split holds at least two fonts), 16 px."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import copy_test_fonts
from g2g.data import fonts as font_data
from g2g.data.fonts import FontsDataset
from g2g.evaluation.font_codes import content_probes
from g2g.evaluation.fonts import (FontJudges, fit_font_judges, font_char_grid, font_pairs, font_swap_scores,
                                  swap_panel)
from g2g.evaluation.markdown import fonts_lines
from g2g.evaluation.metrics import per_image_psnr



@pytest.fixture(scope="module")
def font_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fonts")
    copy_test_fonts(root)
    return root


@pytest.fixture(scope="module")
def splits(font_dir):
    return tuple(FontsDataset(font_dir, split, 16, seed=0, readable_only=False) for split in ("train", "test"))


class Glyphs:
    """A fonts dataset from a glyph table (F, C, 3, H, W), as FontsDataset lays it out."""

    def __init__(self, table: torch.Tensor, charset: str):
        self.table, self.charset, self.num_classes = table, charset, len(table)
        self.images = table.flatten(0, 1)
        self.labels = torch.arange(len(table)).repeat_interleave(table.shape[1])
        self.chars = torch.arange(table.shape[1]).repeat(len(table))

    def lookup(self, labels, chars):
        return self.table[torch.as_tensor(labels), torch.as_tensor(chars)]


def table_of(ds) -> torch.Tensor:
    return ds.images.reshape(ds.num_classes, len(ds.charset), *ds.images.shape[1:])


class Nearest(nn.Module):
    """Reads an image as the label of the nearest of some images: a perfect judge of real glyphs."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.images = nn.Parameter(images.flatten(1).clone(), requires_grad=False)
        self.register_buffer("labels", labels.clone())

    def forward(self, x):
        nearest = self.labels[torch.cdist(x.flatten(1), self.images).argmin(1)]
        return F.one_hot(nearest, int(self.labels.max()) + 1).float()


def perfect_judges(train, test, seed: int = 0) -> FontJudges:
    n = len(train.charset)
    pair_chars = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[n // 2:].sort().values
    every = torch.cat([train.images, test.images])
    return FontJudges(Nearest(every, torch.cat([train.chars, test.chars])),
                      {"training fonts": Nearest(train.images, train.labels),
                       "held-out fonts": Nearest(test.images, test.labels)},
                      pair_chars, {"character": 1.0, "training fonts": 1.0, "held-out fonts": 1.0}, 0)


class Oracle:
    """Draws the true render: the content code is x1's character, the class code its font (numbered over
    both splits); keeps every image given to encode_class."""

    device = torch.device("cpu")

    def __init__(self, train, test):
        self.table = torch.cat([table_of(train), table_of(test)])  # (F_train + F_test, C, 3, H, W)
        self.glyphs = Glyphs(self.table, train.charset)
        self.references: list[torch.Tensor] = []

    def _which(self, x):
        return torch.cdist(x.flatten(1), self.glyphs.images.flatten(1)).argmin(1)

    def encode(self, x):
        return self.glyphs.chars[self._which(x)].float()[:, None], None

    def encode_class(self, x):
        self.references.append(x)
        return self.glyphs.labels[self._which(x)].float()[:, None]

    def decode(self, content, class_code):
        return self.table[class_code[:, 0].round().long(), content[:, 0].round().long()]


class CopyX1:
    device = torch.device("cpu")

    def encode(self, x):
        return x, None

    def encode_class(self, x):
        return torch.zeros(len(x), 1)

    def decode(self, content, class_code):
        return content


def test_pairs_draw_different_fonts_and_references_never_show_the_answer(splits):
    train, test = splits
    judges = perfect_judges(train, test)
    p = font_pairs(5, 52, 400, seed=3, chars=judges.pair_chars)
    assert (p["f1"] != p["f2"]).all() and set(p["f2"].tolist()) == set(range(5))
    assert torch.isin(p["c1"], judges.pair_chars).all() and p["refs"].shape == (400, 8)
    assert (p["refs"] != p["c1"][:, None]).all()
    assert (p["refs"].sort(1).values.diff(1) > 0).all()       # distinct references
    again = font_pairs(5, 52, 400, seed=3, chars=judges.pair_chars)
    assert all(torch.equal(p[k], again[k]) for k in p)
    oracle = Oracle(train, test)
    font_swap_scores(oracle, train, test, n_pairs=50, judges=judges)
    # per split: x2's references, then x1's own font's for the redrawn x1
    assert [len(r) for r in oracle.references] == [400, 400, 400, 400]
    shown = oracle.references[2].unflatten(0, (50, 8))  # the held-out pairs' references
    q = font_pairs(test.num_classes, 52, 50, 0, judges.pair_chars)
    true = test.lookup(q["f2"], q["c1"])
    assert torch.equal(shown[:, 0], test.lookup(q["f2"], q["refs"][:, 0]))  # x2 first
    assert not (shown == true[:, None]).flatten(2).all(2).any()


def test_baselines_match_direct_computation(splits):
    train, test = splits
    judges = perfect_judges(train, test)
    scores = font_swap_scores(None, train, test, n_pairs=60, judges=judges)
    for split, ds in (("training fonts", train), ("held-out fonts", test)):
        rows = scores[split]["rows"]
        assert list(rows) == ["copy x1", "mean glyph", "retrieval 1-shot", "retrieval 8-shot", "true render"]
        assert rows["true render"]["psnr"] == 100.0 and rows["true render"]["copy_through"] == 0.0
        p = font_pairs(ds.num_classes, 52, 60, 0, judges.pair_chars)
        x1, true = ds.lookup(p["f1"], p["c1"]), ds.lookup(p["f2"], p["c1"])
        assert rows["copy x1"]["psnr"] == pytest.approx(per_image_psnr(x1, true).mean().item(), abs=1e-5)
        assert rows["copy x1"]["copy_through"] == 1.0
        fonts = table_of(train)                               # (G, C, 3, H, W)
        for k in (1, 8):
            expected = []
            for n in range(60):
                allowed = [g for g in range(train.num_classes) if ds is test or g != p["f2"][n]]
                if k == 1:
                    mean = fonts[allowed, p["c1"][n]].mean(0)
                    expected.append(per_image_psnr(mean[None], true[n:n + 1]))
                refs = ds.lookup(p["f2"][n].expand(k), p["refs"][n, :k])
                dist = [(fonts[g, p["refs"][n, :k]] - refs).square().sum().item() for g in allowed]
                found = fonts[allowed[min(range(len(allowed)), key=dist.__getitem__)], p["c1"][n]]
                expected.append(per_image_psnr(found[None], true[n:n + 1]))
            got = torch.cat(expected).view(60, -1).mean(0)
            assert rows[f"retrieval {k}-shot"]["psnr"] == pytest.approx(got[-1].item(), abs=1e-4)
            if k == 1:
                assert rows["mean glyph"]["psnr"] == pytest.approx(got[0].item(), abs=1e-4)


def test_retrieval_finds_a_held_out_font_that_copies_a_training_font(splits):
    train, _ = splits
    copy = Glyphs(table_of(train)[[0, 1]].clone(), train.charset)   # held-out fonts drawn like training fonts
    scores = font_swap_scores(None, train, copy, n_pairs=40, judges=perfect_judges(train, copy))
    rows = scores["held-out fonts"]["rows"]
    assert rows["retrieval 1-shot"]["psnr"] == rows["retrieval 8-shot"]["psnr"] == 100.0
    assert rows["retrieval 8-shot"]["font_transferred"] == 1.0 and rows["retrieval 8-shot"]["copy_through"] == 0.0
    assert rows["copy x1"]["psnr"] < 30


def test_the_true_render_scores_perfectly_and_a_copy_of_x1_copies_through(splits):
    train, test = splits
    judges = perfect_judges(train, test)
    oracle = font_swap_scores(Oracle(train, test), train, test, n_pairs=50, judges=judges)
    copier = font_swap_scores(CopyX1(), train, test, n_pairs=50, judges=judges, baselines=True)
    for split in ("training fonts", "held-out fonts"):
        for k in (1, 8):
            row = oracle[split]["rows"][f"model {k}-shot"]
            assert row["psnr"] == 100.0 and row["ssim"] == pytest.approx(1.0) and row["l1"] == 0.0
            assert row["character_kept"] == row["font_transferred"] == 1.0 and row["copy_through"] == 0.0
            copied = copier[split]["rows"][f"model {k}-shot"]
            assert copied["copy_through"] == 1.0 and copied == copier[split]["rows"]["copy x1"]
        assert list(oracle[split]["rows"]) == ["model 1-shot", "model 8-shot"]


class FontOnly(Oracle):
    """Draws the first character of the charset in the class code's font, whatever the content code."""

    def decode(self, content, class_code):
        return super().decode(torch.zeros_like(content), class_code)


def test_redrawn_x1_shows_whether_a_model_draws_its_own_characters_back(splits):
    train, test = splits
    judges = perfect_judges(train, test)
    for model, kept in ((Oracle(train, test), 1.0), (FontOnly(train, test), 0.0)):
        scores = font_swap_scores(model, train, test, n_pairs=50, judges=judges)
        for split in ("training fonts", "held-out fonts"):
            r = scores[split]["redrawn"]
            assert r["character_kept"] == r["character_kept_readable"] == kept and r["font_kept"] == 1.0
            assert (r["psnr"] == 100.0) == (kept == 1.0)
    lines = "\n".join(fonts_lines(scores))
    assert lines.count("Redrawn (x1's content code with the 8-shot class code of its own font") == 2
    assert "character kept 0.0 % (readable: 0.0 %), font kept 100.0 %" in lines
    assert "redrawn" not in font_swap_scores(None, train, test, n_pairs=20, judges=judges)["held-out fonts"]


def test_misreadings_name_the_characters_the_judge_reads_instead(splits):
    train, test = splits
    judges = perfect_judges(train, test)
    first = train.charset[0]
    right = font_swap_scores(Oracle(train, test), train, test, n_pairs=50, judges=judges)
    wrong = font_swap_scores(FontOnly(train, test), train, test, n_pairs=50, judges=judges)
    c1 = font_pairs(test.num_classes, len(test.charset), 50, 0, judges.pair_chars, 8)["c1"]
    expected = sorted(([test.charset[c], first, int((c1 == c).sum())] for c in c1.unique().tolist()
                       if test.charset[c] != first), key=lambda m: (-m[2], test.charset.index(m[0])))[:5]
    for part in (wrong["held-out fonts"]["rows"]["model 8-shot"], wrong["held-out fonts"]["redrawn"]):
        assert part["misread"] == expected
    assert right["held-out fonts"]["rows"]["model 8-shot"]["misread"] == right["held-out fonts"]["redrawn"]["misread"] == []
    lines = "\n".join(fonts_lines(wrong))
    m = expected[0]
    assert "Most frequent misreadings of m1 (model 8-shot, among the readable answers" in lines
    assert f"'{m[0]}' → '{first}' {m[2]}" in lines and "most frequent misreadings: none" in "\n".join(fonts_lines(right))


class GreyPixels(CopyX1):
    """The content code is the image's grey channel: the probes on it are the probes on the pixels."""

    def encode(self, x):
        return x[:, :1], None


class Blank(CopyX1):
    """The same content code for every image; draws a black 16 px image."""

    def encode(self, x):
        return torch.zeros(len(x), 1), None

    def decode(self, content, class_code):
        return -torch.ones(len(content), 3, 16, 16)


def test_content_probes_read_the_character_and_the_font_from_the_content_code(splits):
    train, test = splits
    same = content_probes(GreyPixels(), train, test, seed=3)
    for part in ("character", "font"):
        assert same[part]["code"] == same[part]["pixels"]
    assert same["character"]["pixels"] > 2 * same["character"]["chance"]
    blank = content_probes(Blank(), train, test)  # one answer for every glyph: each character or font once in N
    assert blank["character"]["code"] == pytest.approx(1 / len(train.charset)) == blank["character"]["chance"]
    assert blank["font"]["code"] == pytest.approx(1 / test.num_classes) == blank["font"]["chance"]
    section = font_swap_scores(Blank(), train, test, n_pairs=20, judges=perfect_judges(train, test))
    assert section["content code"]["character"]["code"] == blank["character"]["code"]
    line = "\n".join(fonts_lines(section))
    assert (f"the character of the held-out fonts {100 / len(train.charset):.1f} % "
            f"({100 * blank['character']['pixels']:.1f} %; chance {100 / len(train.charset):.1f} %)") in line
    assert "content code" not in font_swap_scores(None, train, test, n_pairs=20, judges=perfect_judges(train, test))


def test_character_kept_readable_counts_only_answers_the_judge_reads(splits):
    train, test = splits
    judges = perfect_judges(train, test)
    chars = torch.cat([train.chars, test.chars])
    misread = torch.cat([torch.zeros_like(train.chars), test.labels == 0]).bool()  # held-out font 0
    chars[misread] = (chars[misread] + 1) % len(train.charset)
    judges.character = Nearest(torch.cat([train.images, test.images]), chars)
    rows = font_swap_scores(Oracle(train, test), train, test, n_pairs=60, judges=judges,
                            baselines=True)["held-out fonts"]["rows"]
    truth, oracle = rows["true render"], rows["model 8-shot"]
    assert 0 < truth["answer_readable"] < 1 and truth["character_kept"] == truth["answer_readable"]
    assert truth["character_kept_readable"] == oracle["character_kept_readable"] == 1.0
    lo, hi = rows["copy x1"]["character_kept_readable_ci95"]
    assert lo <= rows["copy x1"]["character_kept_readable"] <= hi


def test_fitted_judges_are_reused_and_deterministic(splits):
    train, test = splits
    judges = fit_font_judges(train, test, seed=0, steps=30, device="cpu")
    assert set(judges.accuracy) == {"character", "training fonts", "held-out fonts"}
    assert len(judges.pair_chars) == 26 and all(0 <= a <= 1 for a in judges.accuracy.values())
    first, second = (font_swap_scores(None, train, test, n_pairs=40, judges=judges) for _ in range(2))
    first.pop("runtime_s"), second.pop("runtime_s")
    assert first == second and first["judges"]["steps"] == 30


def test_picture_helpers_draw_uint8_grids(splits, tmp_path):
    from g2g.inference import load
    from helpers import tiny_model_file
    train, test = splits
    model = load(tiny_model_file(tmp_path / "tiny.safetensors"))
    panel = swap_panel(model, test, n=3, seed=0)
    assert panel.dtype == torch.uint8 and panel.shape == (3, 4 * 18 + 2, 3 * 18 + 2)
    grid = font_char_grid(model, test, [0, 1], "AgQ", seed=0, content_ds=train)
    assert grid.dtype == torch.uint8 and grid.shape == (3, 3 * 18 + 2, 4 * 18 + 2)
    assert torch.equal(grid, font_char_grid(model, test, [0, 1], "AgQ", seed=0, content_ds=train))


def test_eval_cli_writes_the_fonts_section(font_dir, tmp_path, monkeypatch):
    import json

    from g2g.cli import main
    from helpers import tiny_model_file
    monkeypatch.setattr(font_data, "JUDGE", {**font_data.JUDGE, "steps": 2, "folds": 2})  # a token readability judge
    monkeypatch.setattr(font_data, "READ_THRESHOLD", 0.0)
    path = tiny_model_file(tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    code = main(["eval", str(path), "--data", "fonts", "--root", str(font_dir), "--out", str(out), "--pairs", "24",
                 "--classifier-steps", "20", "--probe-images", "60", "--k-shots", "1"])
    assert code == 0
    md = (out / "metrics.md").read_text()
    assert "## Fonts: true swaps" in md and "### held-out fonts" in md and "| retrieval 8-shot |" in md
    assert "What the content code holds (linear probes" in md
    section = json.loads((out / "metrics.json").read_text())["fonts"]
    assert set(section["held-out fonts"]["rows"]) == {"model 1-shot", "model 8-shot", "copy x1", "mean glyph",
                                                      "retrieval 1-shot", "retrieval 8-shot", "true render"}
    assert section["judges"]["steps"] == 20 and section["training fonts"]["pairs"] == 24
