"""Datasets: the shapes renderer (determinism, ground-truth swaps), digits, and image folders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from g2g.data import shapes as S
from g2g.data.datasets import DigitsDataset, ImageFolderDataset, load_image

SIZE = 32


def _factors(n: int, seed: int = 0) -> torch.Tensor:
    return S.sample_factors(n, torch.Generator().manual_seed(seed))


def _grey(factors: torch.Tensor) -> torch.Tensor:
    """Background shade in [-1, 1] for each row of factors: (N,)."""
    lo, hi = S.BACKGROUND_RANGE
    return (lo + factors[:, 4] * (hi - lo)) * 2 - 1


# --- shapes: constants and renderer --------------------------------------------------------------


def test_class_constants():
    assert (S.N_SHAPES, S.N_SCHEMES, S.N_CLASSES) == (6, 5, 30)
    assert len(S.SHAPE_NAMES) == 6 and len(S.SCHEME_NAMES) == 5
    assert S.FACTOR_NAMES == ("x", "y", "scale", "rotation", "background")
    assert len(S.HELD_OUT_CLASSES) == 5 and len(S.SEEN_CLASSES) == 25
    assert sorted(S.HELD_OUT_CLASSES + S.SEEN_CLASSES) == list(range(30))
    seen_shapes = {c // S.N_SCHEMES for c in S.SEEN_CLASSES}
    seen_schemes = {c % S.N_SCHEMES for c in S.SEEN_CLASSES}
    for c in S.HELD_OUT_CLASSES:  # each held-out class recombines a seen shape and a seen scheme
        assert c // S.N_SCHEMES in seen_shapes and c % S.N_SCHEMES in seen_schemes


def test_render_shape_range_and_determinism():
    labels, factors = torch.arange(30), _factors(30)
    a = S.render(labels, factors, SIZE)
    assert a.shape == (30, 3, SIZE, SIZE) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, S.render(labels.clone(), factors.clone(), SIZE))


def test_render_rejects_bad_input():
    labels, factors = torch.zeros(2, dtype=torch.long), _factors(2)
    with pytest.raises(ValueError, match="class_ids"):
        S.render(torch.tensor([0, 30]), factors, SIZE)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        S.render(labels, factors + 1, SIZE)
    with pytest.raises(ValueError, match="shape"):
        S.render(labels, factors[:, :4], SIZE)
    with pytest.raises(ValueError, match="size"):
        S.render(labels, factors, 8)


def test_swap_target_has_content_of_a_and_class_of_b():
    fa = _factors(1, seed=1)
    a, b = torch.tensor([S.SEEN_CLASSES[0]]), torch.tensor([S.SEEN_CLASSES[-1]])
    swapped = S.render(b, fa, SIZE)[0]  # the true mixed image: content of a, class of b
    # Corners are background, so they carry a's background shade exactly.
    corners = swapped[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (3, 4)
    assert torch.allclose(corners, _grey(fa).expand_as(corners))
    # b's fill and outline colours both appear (some pixel within 0.05 of each).
    for colour in S.SCHEME_COLOURS[int(b) % S.N_SCHEMES] * 2 - 1:  # (3,) each
        assert (swapped - colour.view(3, 1, 1)).abs().amax(0).min() < 0.05
    assert not torch.equal(swapped, S.render(a, fa, SIZE)[0])


def test_changing_only_the_class_changes_many_pixels():
    factors = _factors(200, seed=2)
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(0, S.N_CLASSES, (200,), generator=gen)
    b = (a + torch.randint(1, S.N_CLASSES, (200,), generator=gen)) % S.N_CLASSES  # always != a
    xa, xb = S.render(a, factors, SIZE), S.render(b, factors, SIZE)
    changed = ((xa - xb).abs().amax(1) > 0.1).float().mean((1, 2))  # fraction of pixels, (200,)
    assert changed.min() > 0.05
    assert torch.equal(xa, S.render(a.clone(), factors, SIZE))


def test_shape_stays_inside_the_image():
    factors = _factors(300, seed=4)
    images = S.render(torch.arange(300) % S.N_CLASSES, factors, SIZE)
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., 0], images[..., -1]], -1)
    assert torch.allclose(border, _grey(factors).view(-1, 1, 1).expand_as(border))


@pytest.mark.parametrize("column, summed", [(0, -2), (1, -1)])  # x moves along columns, y down the rows
def test_position_factor_moves_centre_of_mass(column, summed):
    factors = torch.tensor([[0.5, 0.5, 0.5, 0.3, 0.2]]).repeat(2 * S.N_CLASSES, 1)
    factors[: S.N_CLASSES, column], factors[S.N_CLASSES :, column] = 0.1, 0.9
    images = S.render(torch.arange(S.N_CLASSES).repeat(2), factors, SIZE)
    mask = ((images - _grey(factors).view(-1, 1, 1, 1)).abs().amax(1) > 0.05).float()  # (N, H, W)
    coord = torch.arange(SIZE, dtype=torch.float32)
    profile = mask.sum(summed)  # (N, W) for x, (N, H) for y
    centre = (profile * coord).sum(-1) / profile.sum(-1)  # (N,) in pixels
    assert (centre[S.N_CLASSES :] - centre[: S.N_CLASSES] > 3).all()


def test_all_classes_pairwise_distinguishable():
    factors = _factors(4, seed=5)  # the same 4 contents for every class
    images = S.render(torch.arange(S.N_CLASSES).repeat_interleave(4), factors.repeat(S.N_CLASSES, 1), SIZE)
    flat = images.view(S.N_CLASSES, 4, -1)
    diff = (flat.unsqueeze(0) - flat.unsqueeze(1)).abs().mean(-1).mean(-1)  # (30, 30) mean abs difference
    off_diagonal = diff[~torch.eye(S.N_CLASSES, dtype=torch.bool)]
    assert off_diagonal.min() > 0.02


def test_every_rotation_is_identifiable():
    """The swap target render(content of x1, class of x2) exists only if x1's rotation can be read off
    x1 whatever its shape: no two rotations in the window may give the same image (a circle, or a
    square over a full turn, would)."""
    rotations = torch.linspace(0, 1, 11)
    for cls in range(0, S.N_CLASSES, S.N_SCHEMES):  # one class per shape
        factors = torch.tensor([0.5, 0.5, 1.0, 0.0, 0.5]).repeat(len(rotations), 1)
        factors[:, 3] = rotations
        images = S.render(torch.full((len(rotations),), cls), factors, 64).flatten(1)
        diff = (images.unsqueeze(0) - images.unsqueeze(1)).abs().mean(-1)
        off_diagonal = diff[~torch.eye(len(rotations), dtype=torch.bool)]
        assert off_diagonal.min() > 0.02, S.SHAPE_NAMES[cls // S.N_SCHEMES]


# --- shapes: dataset -----------------------------------------------------------------------------


def test_dataset_deterministic_and_splits_differ():
    a = S.ShapesDataset("train", size=SIZE, n=60, seed=0)
    b = S.ShapesDataset("train", size=SIZE, n=60, seed=0)
    for attr in ("images", "labels", "factors"):
        assert torch.equal(getattr(a, attr), getattr(b, attr))
    val = S.ShapesDataset("val", size=SIZE, n=60, seed=0)
    test = S.ShapesDataset("test", size=SIZE, n=60, seed=0)
    other_seed = S.ShapesDataset("train", size=SIZE, n=60, seed=1)
    for other in (val, test, other_seed):
        assert not torch.equal(a.factors, other.factors)
    assert not torch.equal(val.factors, test.factors)
    assert a.images.shape == (60, 3, SIZE, SIZE) and a.factors.shape == (60, 5)
    assert a.num_classes == 30 and len(a.class_names) == 30 and len(a) == 60
    image, label = a[3]
    assert torch.equal(image, a.images[3]) and isinstance(label, int) and label == int(a.labels[3])
    # The stored images are exactly the renders of the stored labels and factors.
    assert torch.equal(a.images[:5], S.render(a.labels[:5], a.factors[:5], SIZE))


def test_dataset_classes_balanced_and_held_out():
    train = S.ShapesDataset("train", size=16, n=250)
    counts = torch.bincount(train.labels, minlength=30)
    assert set(train.labels.tolist()) == set(S.SEEN_CLASSES)
    assert counts[list(S.SEEN_CLASSES)].tolist() == [10] * 25 and counts[list(S.HELD_OUT_CLASSES)].sum() == 0
    held = S.ShapesDataset("test", size=16, n=50, classes="heldout")
    assert set(held.labels.tolist()) == set(S.HELD_OUT_CLASSES)
    assert set(S.ShapesDataset("val", size=16, n=60, classes="all").labels.tolist()) == set(range(30))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "training"}, "split"),
        ({"classes": "unseen"}, "classes"),
        ({"split": "train", "classes": "heldout"}, "held-out"),
        ({"size": 8}, "size"),
        ({"n": 0}, "n must"),
    ],
)
def test_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.ShapesDataset(**{"size": 16, "n": 10, **kwargs})


# --- digits --------------------------------------------------------------------------------------


def test_digits_dataset():
    splits = {s: DigitsDataset(s, size=16) for s in ("train", "val", "test")}
    assert sum(len(d) for d in splits.values()) == 1797
    assert abs(len(splits["train"]) - 0.7 * 1797) < 2
    all_indices = torch.cat([d.indices for d in splits.values()])
    assert len(set(all_indices.tolist())) == 1797  # disjoint and complete
    train = splits["train"]
    assert train.images.shape == (len(train), 3, 16, 16) and train.labels.dtype == torch.long
    assert train.num_classes == 10 and train.class_names == [str(d) for d in range(10)]
    assert set(splits["val"].labels.tolist()) == set(range(10))  # stratified
    assert train.images.min() >= -1 and train.images.max() <= 1 and train.images.min() == -1
    assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey, replicated to 3 channels
    image, label = train[0]
    assert image.shape == (3, 16, 16) and isinstance(label, int)
    assert torch.equal(DigitsDataset("train", size=16).images, train.images)
    assert not torch.equal(DigitsDataset("train", size=16, seed=1).indices, train.indices)
    with pytest.raises(ValueError, match="split"):
        DigitsDataset("dev")


# --- image folders -------------------------------------------------------------------------------


def _rgb(w: int, h: int, colour) -> Image.Image:
    return Image.new("RGB", (w, h), colour)


@pytest.fixture
def folder(tmp_path):
    """Two classes x 3 images, covering grey, RGBA, palette, 16-bit and a too-small image."""
    root = tmp_path / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    _rgb(50, 40, (255, 0, 0)).save(root / "cat" / "a.JPG")
    Image.new("L", (40, 40), 128).save(root / "cat" / "b.png")
    Image.new("RGBA", (40, 60), (0, 0, 255, 255)).save(root / "cat" / "c.png")
    _rgb(40, 40, (0, 255, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "dog" / "d.png")
    grey16 = Image.fromarray(np.full((40, 40), 65535, dtype=np.uint16))  # white, 16-bit
    grey16.save(root / "dog" / "e.png")
    _rgb(10, 12, (255, 255, 0)).save(root / "dog" / "f.bmp")  # smaller than the target size
    (root / "dog" / "notes.txt").write_text("not an image, ignored by extension")
    return root


def test_image_folder_labels_and_shapes(folder):
    data = ImageFolderDataset(folder, size=SIZE)
    assert data.labelled and data.class_names == ["cat", "dog"] and data.num_classes == 2
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1] and data.skipped == []
    images = torch.stack([data[i][0] for i in range(len(data))])
    assert images.shape == (6, 3, SIZE, SIZE) and images.min() >= -1 and images.max() <= 1
    expected = torch.tensor(
        [[1, -1, -1], [0.0039, 0.0039, 0.0039], [-1, -1, 1], [-1, 1, -1], [1, 1, 1], [1, 1, -1]]
    )  # mean colour per image: red, mid grey (128/127.5 - 1), blue, green, white (16-bit), yellow
    assert torch.allclose(images.mean((2, 3)), expected, atol=0.02)
    assert data[5][1] == 1


def test_image_folder_bad_files(folder):
    good = _rgb(64, 64, (10, 20, 30))
    good.save(folder / "cat" / "full.jpg")
    truncated = (folder / "cat" / "full.jpg").read_bytes()
    (folder / "cat" / "truncated.jpg").write_bytes(truncated[: len(truncated) // 2])
    (folder / "dog" / "x.png").write_text("hello")
    data = ImageFolderDataset(folder, size=SIZE)
    for name in ("truncated.jpg", "x.png"):
        with pytest.raises(ValueError, match=name):
            data[data.paths.index(str(next(folder.rglob(name))))]
        with pytest.raises(ValueError, match=name):
            load_image(next(folder.rglob(name)), SIZE)
    skipping = ImageFolderDataset(folder, size=SIZE, skip_bad_images=True)
    assert len(skipping) == 7
    assert sorted(Path(p).name for p in skipping.skipped) == ["truncated.jpg", "x.png"]
    assert all(skipping[i][0].shape == (3, SIZE, SIZE) for i in range(len(skipping)))


def test_image_folder_flat_unlabelled(tmp_path):
    for i in range(3):
        _rgb(30, 20, (i * 100, 0, 0)).save(tmp_path / f"{i}.webp")
    data = ImageFolderDataset(tmp_path, size=16)
    assert not data.labelled and data.num_classes == 1 and data.labels.tolist() == [0, 0, 0]
    assert data[2][0].shape == (3, 16, 16)


def test_image_folder_split_is_deterministic_and_disjoint(tmp_path):
    (tmp_path / "a").mkdir()
    for i in range(20):
        _rgb(8, 8, (i, i, i)).save(tmp_path / "a" / f"{i:02d}.png")
    parts = {s: ImageFolderDataset(tmp_path, size=16, split=s).paths for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [16, 2, 2]
    assert len(set().union(*parts.values())) == 20
    assert ImageFolderDataset(tmp_path, size=16, split="val").paths == parts["val"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        ImageFolderDataset(tmp_path / "file.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png", 16)
    with pytest.raises(ValueError, match="directory"):
        load_image(tmp_path, 16)
