"""The fonts dataset: the rendering convention, the refusals that name the font and the character, the
skipped-font counts, the split by family group and what reaches training. Fonts are matplotlib's bundled
DejaVu, STIX and Computer Modern files (matplotlib is a test dependency), copied under tmp_path."""
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from g2g.data import fonts
from g2g.data.datamodule import make_dataset
from g2g.data.fonts import FontError, FontsDataset, family_group, render
from g2g.data.pairing import PairDataset

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SANS = MPL_FONTS / "DejaVuSans.ttf"
# kept: 11 fonts in 7 family groups (dejavu, stixgeneral and five Computer Modern faces)
LAYOUT = {"dejavu/sans": ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf"], "dejavu": ["DejaVuSerif.ttf"],
          "cm": ["cmr10.ttf", "cmb10.ttf", "cmtt10.ttf", "cmss10.ttf", "cmti10.ttf"],
          "stix": ["STIXGeneral.ttf", "STIXGeneralBol.ttf"],
          "odd": ["LastResortHE-Regular.ttf", "STIXSizOneSymReg.ttf"]}  # every letter a box; no letters at all


@pytest.fixture
def font_dir(tmp_path):
    root = tmp_path / "fonts"
    for folder, names in LAYOUT.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(MPL_FONTS / name, root / folder / name)
    (root / "odd" / "broken.ttf").write_text("not a font")
    (root / "odd" / "notes.txt").write_text("not a font either, and not named like one")
    (root / ".hidden").mkdir()
    shutil.copy(SANS, root / ".hidden" / "DejaVuSans.ttf")
    return root


def _ink_rows_cols(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    ink = (image[0] > -1).numpy()  # (H, W): any ink
    return np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))


def test_render_shape_range_colours_and_determinism():
    x = render(SANS, "AgZ", 32)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1                      # black background, white ink
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey
    assert (x[:, :, 0] == -1).all() and (x[:, :, -1] == -1).all()           # a margin all round
    assert torch.equal(x, render(str(SANS), "AgZ", 32))
    assert torch.equal(render(SANS, "AgZ", 16), render(SANS, "AgZ", 16))


def test_render_centres_each_glyph_and_scales_the_set_to_80_percent():
    chars = "AgjMWxo"
    x = render(SANS, chars, 64)
    rows = [_ink_rows_cols(img)[0] for img in x]
    for img in x:                                              # each glyph centred horizontally on its ink
        cols = _ink_rows_cols(img)[1]
        assert abs((cols[0] + cols[-1]) / 2 - 31.5) <= 1
    top, bottom = min(r[0] for r in rows), max(r[-1] for r in rows)
    assert abs((top + bottom) / 2 - 31.5) <= 1                 # the set centred vertically
    assert abs((bottom - top + 1) - 0.8 * 64) <= 2             # ascender to descender: 80 % of the side
    x_, o, a = (rows[chars.index(c)] for c in "xoA")           # one scale and one baseline for the set
    assert abs(x_[-1] - a[-1]) <= 1 and abs(o[-1] - a[-1]) <= 1 and len(x_) < 0.8 * len(a) and len(o) < len(a)


def test_render_refusals_name_the_font_and_the_character(tmp_path):
    with pytest.raises(ValueError, match=r"DejaVuSans\.ttf.*'中' \(U\+4E2D\).*\.notdef") as e:
        render(SANS, "A中", 32)                                # DejaVu has no CJK
    assert e.value.reason == "missing glyph"
    with pytest.raises(FontError, match=r"LastResortHE-Regular\.ttf: 'b' \(U\+0062\) renders the same image as 'a'"):
        render(MPL_FONTS / "LastResortHE-Regular.ttf", "ab", 32)
    with pytest.raises(FontError, match=r"STIXSizOneSymReg\.ttf: 'A' \(U\+0041\) is blank"):
        render(MPL_FONTS / "STIXSizOneSymReg.ttf", "A", 32)
    bad = tmp_path / "broken.ttf"
    bad.write_text("not a font")
    with pytest.raises(FontError, match=r"cannot read font .*broken\.ttf"):
        render(bad, "A", 32)
    with pytest.raises(FileNotFoundError, match="missing.ttf"):
        render(tmp_path / "missing.ttf", "A", 32)


def test_family_groups_merge_a_foundrys_variants():
    assert family_group("DejaVu Sans Mono") == family_group("DejaVu Serif") == "dejavu"
    assert family_group("Foreshadow OL BRK") == family_group("Foreshadow BRK") == "foreshadow"
    assert family_group("8-bit Limit O BRK") == "8bit" and family_group("? Systematic TT BRK") == "systematic"
    assert family_group("cmr10") != family_group("cmb10")


def test_dataset_skips_counts_and_splits_by_family_group(font_dir, caplog):
    train = FontsDataset(font_dir, "train", 32, seed=0, readable_only=False)
    test = FontsDataset(font_dir, "test", 32, seed=0, readable_only=False)
    assert train.census["fonts"] == 14                         # hidden folder and .txt left out; any depth
    assert train.census["skipped"] == {"blank glyph": 1, "duplicate glyphs": 1, "unreadable file": 1}
    assert train.skipped_fonts["unreadable file"] == [str(font_dir / "odd" / "broken.ttf")]
    assert "14 fonts, 3 skipped (blank glyph 1, duplicate glyphs 1, unreadable file 1)" in caplog.text
    assert train.census["kept"] == [11, 7]
    assert set(train.groups).isdisjoint(test.groups)           # no family on both sides
    assert len(test.fonts) >= 0.1 * 11 and len(train.fonts) + len(test.fonts) == 11
    assert "dejavu" in train.groups + test.groups and train.groups.count("dejavu") in (0, 4)
    val = FontsDataset(font_dir, "val", 32, seed=0, readable_only=False)
    assert val.fonts == test.fonts and torch.equal(val.images, test.images)
    again = FontsDataset(font_dir, "train", 32, seed=0, readable_only=False)
    assert again.fonts == train.fonts and torch.equal(again.images, train.images)
    splits = {tuple(FontsDataset(font_dir, "test", 32, seed=s, readable_only=False).groups) for s in range(6)}
    assert len(splits) > 1                                     # the seed draws the held-out groups


def test_dataset_refuses_folders_it_cannot_use(tmp_path):
    with pytest.raises(FileNotFoundError, match="font folder not found"):
        FontsDataset(tmp_path / "nowhere")
    (tmp_path / "a.ttf").write_text("not a font")
    with pytest.raises(ValueError, match="is a file"):
        FontsDataset(tmp_path / "a.ttf")
    with pytest.raises(ValueError, match=r"no usable fonts .*1 fonts, 1 skipped \(unreadable file 1\)"):
        FontsDataset(tmp_path, readable_only=False)
    (tmp_path / "a.ttf").unlink()
    with pytest.raises(ValueError, match=r"no font files \(.ttf, .otf, .ttc\) under"):
        FontsDataset(tmp_path)
    for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf"):                  # one family group only
        shutil.copy(MPL_FONTS / name, tmp_path / name)
    with pytest.raises(ValueError, match="cannot hold out 10% of the fonts by family group.*1 family group"):
        FontsDataset(tmp_path, size=32, readable_only=False)
    with pytest.raises(ValueError, match="readability rule needs fonts of at least 2 family groups"):
        FontsDataset(tmp_path, size=32)
    with pytest.raises(ValueError, match="held_out_fraction"):
        FontsDataset(tmp_path, held_out_fraction=0.05)


def test_dataset_images_labels_and_true_swaps(font_dir):
    ds = FontsDataset(font_dir, "train", 32, readable_only=False)
    n = len(ds.charset)
    assert ds.charset == fonts.CHARSET and len(ds) == n * ds.num_classes == len(ds.chars)
    assert ds.images.shape == (len(ds), 3, 32, 32) and ds.labels.max() == ds.num_classes - 1
    assert len(set(ds.class_names)) == ds.num_classes
    f = ds.num_classes - 1
    file, face = ds.fonts[f]
    expected = render(file, fonts.CHARSET, 32, face)
    assert torch.equal(ds.lookup(torch.tensor([f]), torch.tensor([fonts.CHARSET.index("g")])),
                       expected[fonts.CHARSET.index("g")][None])
    image, label = ds[f * n + 3]
    assert label == f and torch.equal(image, expected[3])


def test_no_character_label_reaches_training_pairs(font_dir):
    ds = FontsDataset(font_dir, "train", 32, readable_only=False)
    batch = PairDataset(ds, supervised=True, k_refs=2, seed=0).__getitems__(list(range(16)))
    assert set(batch) == {"x1", "x2", "ref1", "ref2", "y1", "y2"}
    assert (batch["y1"] != batch["y2"]).all() and int(batch["y1"].max()) < ds.num_classes  # fonts, not characters
    images = ds.images.flatten(1)
    for x, y in zip(batch["x1"], batch["y1"]):                 # y1 is the font of x1
        rows = torch.nonzero((images == x.flatten()).all(1)).flatten()
        assert int(y) in ds.labels[rows].tolist()


def test_collections_give_one_font_per_face(tmp_path):
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.ttCollection import TTCollection
    collection = TTCollection()
    collection.fonts = [TTFont(MPL_FONTS / "DejaVuSans.ttf"), TTFont(MPL_FONTS / "DejaVuSerif.ttf")]
    collection.save(tmp_path / "pair.ttc")
    assert fonts.font_faces(tmp_path) == [(str(tmp_path / "pair.ttc"), 0), (str(tmp_path / "pair.ttc"), 1)]
    sans, serif = (render(tmp_path / "pair.ttc", "Ag", 16, index=i) for i in (0, 1))
    assert torch.equal(sans, render(SANS, "Ag", 16)) and not torch.equal(sans, serif)


def test_readability_rule_removes_fonts_that_draw_symbols():
    files = ["DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "STIXGeneral.ttf",
             "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf", "cmb10.ttf",
             "cmex10.ttf", "cmsy10.ttf"]                       # the last two draw symbols for letters
    grey = np.stack([fonts.render_grey(MPL_FONTS / f, fonts.CHARSET, 32) for f in files])
    groups = [family_group(fonts.font_name((str(MPL_FONTS / f), 0))[0]) for f in files]
    read = fonts.read_fractions(grey, groups, folds=3, steps=200, batch_size=32, size=16)  # judged at 16 px
    assert read.shape == (len(files),)
    assert (read[:-2] >= 0.5).all() and (read[-2:] < 0.5).all(), dict(zip(files, read.round(2)))


def test_train_cli_reaches_the_fonts_dataset(font_dir, tmp_path, monkeypatch):
    from g2g.cli import main
    from helpers import write_train_config
    monkeypatch.setattr(fonts, "JUDGE", {**fonts.JUDGE, "steps": 2, "folds": 2})  # plumbing only: a token judge
    monkeypatch.setattr(fonts, "READ_THRESHOLD", 0.0)
    config = write_train_config(tmp_path / "tiny.yaml", tmp_path / "run", dataset="fonts",
                                trainer={"max_steps": 2}, data={"root": str(font_dir), "steps_per_epoch": 2})
    assert main(["train", "--config", config]) == 0
    ds = make_dataset("fonts", "train", 16, str(font_dir))
    assert isinstance(ds, FontsDataset) and ds.num_classes >= 2
    with pytest.raises(ValueError, match="needs a root"):
        make_dataset("fonts", "train", 16)
