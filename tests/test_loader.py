"""The loader at scale, on small generated folders: the cached folder index and its invalidation, the
libjpeg-turbo decode path against Pillow's, automatic worker settings, and an exact, warning-free resume
with worker processes."""
import io
import json
import os
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.fabric.utilities.types import _Stateful
from PIL import Image

import g2g.data.files as files
from g2g.data import index
from g2g.data.datamodule import G2GDataModule, auto_workers
from g2g.data.datasets import ImageFolderDataset, load_image
from g2g.data.files import IMAGE_EXTENSIONS, decode_rgb
from g2g.data.pairing import StepBatchSampler
from g2g.data.real import AnimalFacesDataset, UnlabelledFolderDataset
from g2g.networks.generator import generator_config
from g2g.training import SafeCheckpointIO
from helpers import MODULE_KWARGS, TINY, make_module

LEVEL = 1 / 127.5  # one 8-bit level in the model's [-1, 1] range


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """Every test caches under its tmp_path, and caches even tiny folders."""
    monkeypatch.setenv("G2G_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(index, "CACHE_MIN_FILES", 1)


def _photo(seed: int, size=(36, 44)) -> Image.Image:
    """A smooth image with some texture (JPEG-like content, unlike pure noise), size (width, height)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[1], : size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / sum(size)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def _settle(folder: Path) -> None:
    """Date every directory under folder a minute back, as a folder written long before training is."""
    past = time.time() - 60
    for d in [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]:
        os.utime(d, (past, past))


def _class_folder(root: Path, classes: int = 3, per_class: int = 12) -> Path:
    """classes × per_class small images, JPEG and PNG alternating."""
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for k in range(per_class):
            _photo(100 * c + k).save(root / f"class{c}" / f"{k:02d}.{'jpg' if k % 2 else 'png'}", quality=90)
    return root


# --- the folder index ----------------------------------------------------------------------------


def _rglob_listing(folder: Path) -> list[str]:
    """The listing the index replaces: sorted Path.rglob, image suffixes, files, no hidden names."""
    return [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")]


def test_index_lists_what_rglob_listed_in_the_same_order(tmp_path):
    root = tmp_path / "tree"
    for name in ["a/b.png", "a-c.png", "a b.jpg", "B.JPG", "a/deep/er/x.webp", ".hidden/y.bmp", "c.jpeg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    for name in [".dot.png", "notes.txt", "a/readme.md", "png"]:
        (root / name).write_bytes(b"")
    (root / "folder.png").mkdir()  # a folder with an image suffix is not a file
    (root / "a" / "link.png").symlink_to(root / "c.jpeg")  # a link to a file counts
    (root / "a" / "loop").symlink_to(root)  # below the top level, links to folders are not followed
    got = index.folder_index(root).files
    assert got == _rglob_listing(root)
    assert got.index("a/b.png") < got.index("a-c.png")  # by path component, unlike sorted strings
    assert ".hidden/y.bmp" in got and "a/link.png" in got and not any("loop" in f for f in got)


def test_index_is_cached_as_json_and_used_while_the_folder_is_unchanged(tmp_path, monkeypatch):
    root = _class_folder(tmp_path / "data", classes=2, per_class=3)
    _settle(root)
    first = index.folder_index(root)
    (cache,) = (tmp_path / "cache" / "index").glob("*.json")
    entry = json.loads(cache.read_text())
    assert entry["folder"] == os.path.realpath(root) and entry["files"] == first.files
    assert set(entry["dirs"]) == {"", "class0", "class1"}

    def no_scan(root):
        raise AssertionError("listed again although the folder is unchanged")

    with monkeypatch.context() as m:
        m.setattr(index, "_scan", no_scan)
        assert index.folder_index(root) == first
        assert ImageFolderDataset(root, size=8).paths == [str(root / f) for f in first.files]


@pytest.mark.parametrize("change", ["add", "remove", "rename", "add_folder", "add_deep"])
def test_index_cache_is_invalidated_when_the_folder_changes(tmp_path, change):
    root = _class_folder(tmp_path / "data", classes=2, per_class=3)
    (root / "class1" / "sub").mkdir()
    _photo(0).save(root / "class1" / "sub" / "s.png")
    _settle(root)
    before = index.folder_index(root).files
    assert index.folder_index(root).files == before  # from the cache
    if change == "add":
        _photo(1).save(root / "class0" / "new.png")
    elif change == "remove":
        (root / "class0" / "00.png").unlink()
    elif change == "rename":
        (root / "class0" / "00.png").rename(root / "class0" / "zz.png")
    elif change == "add_folder":
        (root / "class2").mkdir()
        _photo(2).save(root / "class2" / "c.png")
    else:
        _photo(3).save(root / "class1" / "sub" / "t.png")
    assert index.folder_index(root).files == _rglob_listing(root) != before


def test_unusable_cache_is_listed_again_and_unwritable_cache_dir_is_no_error(tmp_path, monkeypatch):
    root = _class_folder(tmp_path / "data", classes=2, per_class=2)
    _settle(root)
    expected = _rglob_listing(root)
    index.folder_index(root)
    (cache,) = (tmp_path / "cache" / "index").glob("*.json")
    entry = json.loads(cache.read_text())
    for bad in ["{not json", json.dumps({"format": 999}), json.dumps([1, 2]), json.dumps({**entry, "files": [1]}),
                json.dumps({**entry, "dirs": []})]:
        cache.write_text(bad)
        assert index.folder_index(root).files == expected
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("G2G_CACHE_DIR", str(tmp_path / "a_file" / "cache"))  # cannot be created
    assert index.folder_index(root).files == expected
    assert len(UnlabelledFolderDataset(root, size=8)) == len(expected)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    assert index.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("G2G_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert index.cache_dir() == tmp_path / "xdg" / "g2g"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert index.cache_dir() == Path.home() / ".cache" / "g2g"


def test_recently_changed_or_small_folders_are_not_cached(tmp_path, monkeypatch):
    root = _class_folder(tmp_path / "data", classes=2, per_class=2)
    index.folder_index(root)  # just written: its mtimes could still change unseen within one tick
    assert not (tmp_path / "cache").exists()
    _settle(root)
    monkeypatch.setattr(index, "CACHE_MIN_FILES", 10_000)
    index.folder_index(root)
    assert not (tmp_path / "cache").exists()


def test_skip_bad_images_is_decided_again_with_a_cached_index(tmp_path):
    root = _class_folder(tmp_path / "data", classes=2, per_class=3)
    bad = root / "class0" / "01.jpg"
    bad.write_bytes(b"not an image")
    _settle(root)
    first = ImageFolderDataset(root, size=8, skip_bad_images=True)
    assert first.skipped == [str(bad)] and len(first) == 5
    _photo(9).save(bad, format="JPEG")  # repaired in place: the folder's mtimes do not change
    assert len(list((tmp_path / "cache" / "index").glob("*.json"))) == 1
    second = ImageFolderDataset(root, size=8, skip_bad_images=True)
    assert second.skipped == [] and len(second) == 6


# --- decoding ------------------------------------------------------------------------------------


def _jpeg_variants(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    photo = _photo(5, size=(45, 55))  # CelebA's 178 × 218 shape, quartered
    out = {name: folder / f"{name}.jpg" for name in ["plain", "grey", "progressive", "cmyk", "rotated"]}
    photo.save(out["plain"], quality=90)
    photo.convert("L").save(out["grey"], quality=90)
    photo.save(out["progressive"], quality=90, progressive=True)
    photo.convert("CMYK").save(out["cmyk"], quality=90)
    exif = Image.Exif()
    exif[files.EXIF_ORIENTATION] = 6  # stored sideways: a viewer turns it 90° clockwise
    photo.save(out["rotated"], quality=90, exif=exif)
    return out


def test_plain_jpegs_take_the_fast_path_within_one_level_of_pillow(tmp_path, monkeypatch):
    paths = _jpeg_variants(tmp_path / "jpegs")
    assert {n: isinstance(decode_rgb(p), torch.Tensor) for n, p in paths.items()} == {
        "plain": True, "grey": True, "progressive": True, "cmyk": False, "rotated": False}
    assert decode_rgb(paths["rotated"]).size == (55, 45)  # Pillow applies the EXIF rotation
    fast = {(n, s, c): load_image(p, s, crop=c) for n, p in paths.items() for s in (16, 32) for c in (True, False)}
    monkeypatch.setattr(files, "_decode_jpeg", None)  # Pillow only
    for (name, size, crop), x in fast.items():
        slow = load_image(paths[name], size, crop=crop)
        assert x.shape == slow.shape == (3, size, size)
        assert (x - slow).abs().max() <= LEVEL + 1e-6, (name, size, crop)


def test_files_the_fast_path_refuses_get_pillows_verdict(tmp_path):
    good = io.BytesIO()
    _photo(1).save(good, format="JPEG", quality=90)
    data = good.getvalue()
    cases = {"truncated.jpg": data[: len(data) // 2], "empty.jpg": b"", "png_named.jpg": b"\x89PNG\r\n\x1a\n",
             "header_only.jpg": data[:200], "not_jpeg.jpg": b"\xff\xd8\xff" + bytes(20)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"cannot read image {tmp_path / name}: "):
            load_image(tmp_path / name, 16)
    sliver = tmp_path / "sliver.jpg"
    Image.new("RGB", (1010, 10)).save(sliver)
    with pytest.raises(ValueError, match="more than 100 times as long"):
        load_image(sliver, 16)


def test_animal_face_boxes_cut_from_decoded_tensors_as_pillow_crops(tmp_path, monkeypatch):
    """On-the-fly crops from ImageNet JPEGs, one box reaching past the image (Pillow fills black)."""
    root = tmp_path / "datasets"
    boxes = {"n01/n01_1.JPEG": (4, 6, 40, 50), "n01/n01_2.JPEG": (20, 30, 60, 70), "n02/n02_1.JPEG": (0, 0, 45, 55)}
    for k, name in enumerate(boxes):
        src = root / "ILSVRC" / "Data" / "CLS-LOC" / "train" / name
        src.parent.mkdir(parents=True, exist_ok=True)
        _photo(k, size=(45, 55)).save(src, format="JPEG", quality=90)
    entries = ["_".join([n, *map(str, b)]) + ".jpg" for n, b in boxes.items()]
    (root / "animalface_coordinates.txt").write_text("".join(f"{n} {' '.join(map(str, b))}\n" for n, b in boxes.items()))
    (root / "animals_list_train.txt").write_text("\n".join(entries) + "\n")
    fast = AnimalFacesDataset(root, "train", size=16)
    assert isinstance(fast._read(1), torch.Tensor) and fast._read(1).shape == (3, 40, 40)
    images = [fast[i][0] for i in range(3)]
    monkeypatch.setattr(files, "_decode_jpeg", None)
    for i, x in enumerate(images):
        assert (x - fast[i][0]).abs().max() <= LEVEL + 1e-6


# --- worker settings -----------------------------------------------------------------------------


def test_auto_workers_from_the_cores_available(tmp_path, monkeypatch):
    folder = ImageFolderDataset(_class_folder(tmp_path / "data", classes=2, per_class=2), size=8)
    in_memory = type("InMemory", (), {"images": torch.zeros(2, 3, 8, 8)})()
    for cores, workers in [(1, 0), (2, 2), (3, 2), (6, 5), (64, 8)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert auto_workers(folder) == workers and auto_workers(in_memory) == 0


def test_dataloader_workers_pinning_and_persistence(tmp_path):
    root = str(_class_folder(tmp_path / "data", classes=2, per_class=4))
    auto = G2GDataModule(dataset="folder", root=root, image_size=8, batch_size=2).train_dataloader()
    assert auto.num_workers == auto_workers(auto.dataset.base)
    assert auto.persistent_workers == (auto.num_workers > 0) and auto.pin_memory == torch.cuda.is_available()
    shapes = G2GDataModule(dataset="shapes", image_size=16, batch_size=2).train_dataloader()
    assert shapes.num_workers == 0 and not shapes.persistent_workers
    explicit = G2GDataModule(dataset="folder", root=root, image_size=8, batch_size=2, num_workers=1)
    assert explicit.train_dataloader().num_workers == 1
    for bad in [-1, "many", 1.5]:
        with pytest.raises(ValueError, match="num_workers"):
            G2GDataModule(num_workers=bad)


def test_sampler_state_is_the_step_the_stream_resumes_at():
    step = 7
    sampler = StepBatchSampler(batch_size=2, steps_per_epoch=4, step_source=lambda: step)
    assert sampler.state_dict() == {"step": 7}
    alone = StepBatchSampler(batch_size=2, steps_per_epoch=4)
    alone.load_state_dict({"step": 6})
    assert alone.state_dict() == {"step": 6} and list(alone) == [[12, 13], [14, 15]]  # steps 6 and 7
    loader = G2GDataModule(dataset="shapes", image_size=16, batch_size=2).train_dataloader()
    assert isinstance(loader, _Stateful)  # what Lightning checks before it calls a resume unreliable


# --- exact resume with worker processes ----------------------------------------------------------


def _fit(root: Path, data: Path, max_steps: int, ckpt_path=None, save_to=None, workers=2):
    """A tiny model trained on the image folder `data` by a DataLoader with `workers` processes, 4 steps
    per epoch; returns (module, the warnings the run raised)."""
    module = make_module(generator=generator_config(**TINY), **{**MODULE_KWARGS, "num_classes": 3})
    dm = G2GDataModule(dataset="folder", root=str(data), image_size=16, batch_size=4, steps_per_epoch=4,
                       panel_size=2, num_workers=workers)
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", use_distributed_sampler=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(root),
                        plugins=[SafeCheckpointIO()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, dm, ckpt_path=None if ckpt_path is None else str(ckpt_path))
    assert trainer.global_step == max_steps and trainer.train_dataloader.num_workers == workers
    if save_to is not None:
        trainer.save_checkpoint(str(save_to), weights_only=False)
    return module, [str(w.message) for w in caught]


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_mid_epoch_resume_with_workers_is_bit_identical_and_says_nothing(tmp_path):
    data = _class_folder(tmp_path / "data")
    straight, _ = _fit(tmp_path / "straight", data, 4)
    _fit(tmp_path / "first", data, 2, save_to=tmp_path / "mid.ckpt")
    ckpt = torch.load(tmp_path / "mid.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"step": 2}]
    resumed, said = _fit(tmp_path / "resumed", data, 4, ckpt_path=tmp_path / "mid.ckpt")
    _assert_same_weights(straight, resumed)  # generator, EMA, both critics
    assert not [m for m in said if "resumable" in m or "unreliable" in m], said


def test_a_loader_without_state_would_be_warned_about(tmp_path, monkeypatch):
    """The control for the test above: the same resume through a plain DataLoader gets Lightning's warning."""
    import g2g.data.datamodule as datamodule
    data = _class_folder(tmp_path / "data")
    _fit(tmp_path / "first", data, 2, save_to=tmp_path / "mid.ckpt", workers=0)
    ckpt = torch.load(tmp_path / "mid.ckpt", map_location="cpu", weights_only=True)
    del ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    torch.save(ckpt, tmp_path / "plain.ckpt")
    monkeypatch.setattr(datamodule, "StepDataLoader", torch.utils.data.DataLoader)
    _, said = _fit(tmp_path / "resumed", data, 3, ckpt_path=tmp_path / "plain.ckpt", workers=0)
    assert any("not resumable" in m for m in said)
