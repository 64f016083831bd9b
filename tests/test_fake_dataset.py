"""benchmarks/make_fake_dataset.py: small copies in both layouts read with the package's dataset classes."""
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from g2g.data.datasets import ImageFolderDataset
from g2g.data.real import CelebADataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import make_fake_dataset  # noqa: E402


def _pairs(path: Path) -> dict[str, int]:
    return {name: int(value) for name, value in (line.split() for line in path.read_text().splitlines())}


def test_celeba_layout_reads_as_celeba(tmp_path, capsys):
    out = tmp_path / "celeba"
    assert make_fake_dataset.main([str(out), "--n", "400", "--workers", "1"]) == 0
    assert "400 files" in capsys.readouterr().out
    files = sorted((out / "img_align_celeba").iterdir())
    assert [f.name for f in files[:2]] == ["000001.jpg", "000002.jpg"] and len(files) == 400
    with Image.open(files[0]) as img:
        assert img.size == (178, 218) and img.format == "JPEG"
    partition, identity = _pairs(out / "list_eval_partition.txt"), _pairs(out / "identity_CelebA.txt")
    assert list(partition) == [f.name for f in files] == list(identity)
    codes = list(partition.values())
    # CelebA's proportions (162,770 / 19,867 / 19,962), in file order train, val, test
    assert [codes.count(c) for c in range(3)] == [322, 39, 39] and codes == sorted(codes)
    ids = [{i for name, i in identity.items() if partition[name] == c} for c in range(3)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # disjoint, as in CelebA
    assert [len(s) for s in ids] == [16, 2, 2]  # 8,192 / 985 / 1,000 scaled, at least 2 each: ~20 images each
    for c, split in enumerate(("train", "val", "test")):
        data = CelebADataset(out, split, 32)
        assert len(data) == codes.count(c) and data.num_classes == len(ids[c])
        assert set(data.identities.tolist()) == ids[c]
    x, label = data[0]
    assert x.shape == (3, 32, 32) and -1 <= x.min() < x.max() <= 1


def test_folder_layout_reads_as_image_folder(tmp_path):
    out = tmp_path / "folder"
    r = make_fake_dataset.generate(out, "folder", n=205, classes=10, workers=2)
    assert r["files"] == 205 and r["classes"] == 10 and r["bytes"] > 0 and r["files_per_s"] > 0
    data = ImageFolderDataset(out, size=32)
    assert len(data) == 205 and data.num_classes == 10 and data.class_names[0] == "c000"
    assert torch.bincount(data.labels).tolist() in ([20] * 5 + [21] * 5, [21] * 5 + [20] * 5, [20, 21] * 5,
                                                    [21, 20] * 5)
    with Image.open(data.paths[0]) as img:
        assert img.size == (178, 218)
    assert len(ImageFolderDataset(out, size=32, split="train")) > 150


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = make_fake_dataset.generate(tmp_path / "a", n=20, workers=1, seed=3)
    b = make_fake_dataset.generate(tmp_path / "b", n=20, workers=2, seed=3)
    make_fake_dataset.generate(tmp_path / "c", n=20, workers=1, seed=4)
    assert a["bytes"] == b["bytes"]
    for name in ("list_eval_partition.txt", "identity_CelebA.txt", "img_align_celeba/000007.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a/img_align_celeba/000007.jpg").read_bytes() != (tmp_path / "c/img_align_celeba/000007.jpg").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["--n", "5"], "--n must be at least 8"),
    (["--layout", "folder", "--n", "5", "--classes", "10"], "--n >= --classes"),
])
def test_mistakes_are_one_line(tmp_path, capsys, argv, message):
    assert make_fake_dataset.main([str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert make_fake_dataset.main([str(tmp_path), "--n", "10"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
