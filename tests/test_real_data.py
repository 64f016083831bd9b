"""Real datasets in their published on-disk formats, as tiny fake folders: CelebA aligned,
FUNIT Animal Faces (extracted crops, or ImageNet + coordinate file) and unlabelled image trees."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from g2g.data.datamodule import G2GDataModule, make_dataset
from g2g.data.datasets import load_image
from g2g.data.pairing import PairDataset
from g2g.data.real import AnimalFacesDataset, CelebADataset, UnlabelledFolderDataset

# --- CelebA --------------------------------------------------------------------------------------

# image -> (partition 0/1/2, identity); the official files list every image once, in name order
CELEBA = {"000001.jpg": (0, 2880), "000002.jpg": (0, 2937), "000003.jpg": (0, 8692), "000004.jpg": (0, 2880),
          "000005.jpg": (0, 2937), "000006.jpg": (1, 4153), "000007.jpg": (1, 5005), "000008.jpg": (2, 9040)}


def _colour(i: int) -> tuple[int, int, int]:
    return (30 * i, 255 - 30 * i, (70 * i) % 256)


@pytest.fixture(params=["download", "flat"])
def celeba(tmp_path, request):
    """The official download layout (Img/, Eval/, Anno/) or everything directly in root."""
    root = tmp_path / "CelebA"
    sub = {"download": ("Img", "Eval", "Anno"), "flat": ("", "", "")}[request.param]
    for d in sub:
        (root / d).mkdir(parents=True, exist_ok=True)
    images = root / sub[0] / "img_align_celeba"
    images.mkdir(parents=True)
    for i, name in enumerate(CELEBA):
        img = Image.new("RGB", (178, 218), _colour(i))  # aligned CelebA images are 178 x 218
        img.paste((0, 0, 0), (0, 0, 178, 20))  # a black band at the top: cropped away by the centre crop
        img.save(images / name, quality=95)
    (root / sub[1] / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, (p, _) in CELEBA.items()))
    (root / sub[2] / "identity_CelebA.txt").write_text("".join(f"{n} {i}\n" for n, (_, i) in CELEBA.items()))
    return root


def test_celeba_splits_and_identity_labels(celeba):
    train = CelebADataset(celeba, "train", size=16)
    assert [Path(p).name for p in train.paths] == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg",
                                                  "000005.jpg"]
    assert train.class_names == ["2880", "2937", "8692"] and train.num_classes == 3 and train.labelled
    assert train.labels.tolist() == [0, 1, 2, 0, 1]
    assert train.identities.tolist() == [2880, 2937, 8692, 2880, 2937]
    assert len(CelebADataset(celeba, "val", size=16)) == 2
    test = CelebADataset(celeba, "test", size=16)
    assert test.class_names == ["9040"] and test.labels.tolist() == [0]
    image, label = train[2]
    assert image.shape == (3, 16, 16) and label == 2
    assert torch.equal(image, load_image(train.paths[2], 16))  # shorter side to 16, centre square
    colour = torch.tensor(_colour(2)) / 127.5 - 1
    assert torch.allclose(image.mean((1, 2)), colour, atol=0.03)  # the top band was cropped away


def test_celeba_through_make_dataset_and_pairing(celeba):
    data = make_dataset("celeba", "train", image_size=16, root=str(celeba))
    assert isinstance(data, CelebADataset)
    batch = PairDataset(data, supervised=True).__getitems__([0, 1, 2])
    assert batch["x1"].shape == (3, 3, 16, 16) and bool((batch["y1"] != batch["y2"]).all())
    module = G2GDataModule(dataset="celeba", root=str(celeba), image_size=16, batch_size=2, panel_size=2)
    assert module.num_classes == 3 and module.panel_batch()["x1"].shape == (2, 3, 16, 16)  # val split


@pytest.mark.parametrize("missing", ["list_eval_partition.txt", "identity_CelebA.txt", "img_align_celeba"])
def test_celeba_missing_file_is_named(celeba, missing):
    target = next(celeba.rglob(missing))
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(FileNotFoundError, match=missing) as e:
        CelebADataset(celeba, "train", size=16)
    assert "\n" not in str(e.value) and str(celeba / "Eval") in str(e.value)


def test_celeba_bad_lines_and_missing_images(celeba, tmp_path):
    partition = next(celeba.rglob("list_eval_partition.txt"))
    partition.write_text(partition.read_text() + "000009.jpg\n")
    with pytest.raises(ValueError, match=r"list_eval_partition.txt:9"):
        CelebADataset(celeba, "train", size=16)
    partition.write_text(partition.read_text().replace("000009.jpg\n", "000009.jpg 0\n"))
    with pytest.raises(ValueError, match="no identity for 000009.jpg"):
        CelebADataset(celeba, "train", size=16)
    identity = next(celeba.rglob("identity_CelebA.txt"))
    identity.write_text(identity.read_text() + "000009.jpg 1\n")
    data = CelebADataset(celeba, "train", size=16)  # listed but not on disk: named when loaded
    with pytest.raises(FileNotFoundError, match="000009.jpg"):
        data[5]
    skipping = CelebADataset(celeba, "train", size=16, skip_bad_images=True)
    assert len(skipping) == 5 and [Path(p).name for p in skipping.skipped] == ["000009.jpg"]
    assert skipping.identities.tolist() == [2880, 2937, 8692, 2880, 2937]


# --- FUNIT Animal Faces --------------------------------------------------------------------------

# list entry -> source box (x1, y1, x2, y2); two training classes, one test class
ANIMALS = {"train": ["n02085620/n02085620_1152.JPEG_10_5_70_45.jpg", "n02085620/n02085620_7.JPEG_0_0_40_40.jpg",
                     "n02086240/n02086240_12630.JPEG_20_10_50_70.jpg"],
           "test": ["n02138441/n02138441_280.JPEG_5_5_45_35.jpg"]}


def _box(entry: str) -> tuple[int, ...]:
    return tuple(int(v) for v in entry[: -len(".jpg")].split("_")[-4:])


def _source(entry: str) -> str:
    return entry[: entry.index(".JPEG") + len(".JPEG")]


@pytest.fixture
def animals(tmp_path):
    """FUNIT's datasets/ folder with ImageNet sources (a face box of one colour on a grey background),
    the coordinate file, and the list files; `extract()` writes the crops to animals/ as FUNIT's tool does."""
    root = tmp_path / "datasets"
    entries = ANIMALS["train"] + ANIMALS["test"]
    for i, entry in enumerate(entries):
        src = root / "ILSVRC" / "Data" / "CLS-LOC" / "train" / _source(entry)
        src.parent.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (100, 90), (128, 128, 128))
        img.paste(_colour(i + 1), _box(entry))
        img.save(src, format="PNG")  # lossless, so extracted and on-the-fly crops agree exactly
    (root / "animalface_coordinates.txt").write_text(
        "".join(f"{_source(e)} {' '.join(map(str, _box(e)))}\n" for e in entries))
    (root / "animals_list_train.txt").write_text("\n".join(ANIMALS["train"]) + "\n")
    (root / "animals_list_test.txt").write_text("\n".join(ANIMALS["test"]) + "\n")
    return root


def _extract(root: Path) -> None:
    for line in (root / "animalface_coordinates.txt").read_text().splitlines():
        name, *box = line.split()
        out = root / "animals" / f"{name}_{'_'.join(box)}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(root / "ILSVRC" / "Data" / "CLS-LOC" / "train" / name).crop(tuple(map(int, box))).save(
            out, format="PNG")


def test_animals_from_imagenet_and_coordinates(animals):
    train = AnimalFacesDataset(animals, "train", size=16)
    assert train.class_names == ["n02085620", "n02086240"] and train.labels.tolist() == [0, 0, 1]
    assert train.boxes == [_box(e) for e in ANIMALS["train"]] and train.resize == round(16 * 140 / 128)
    for i in range(3):  # the crop is the face box: one colour, no grey background left
        image, label = train[i]
        assert image.shape == (3, 16, 16) and label == train.labels[i]
        colour = torch.tensor(_colour(i + 1)) / 127.5 - 1
        assert torch.allclose(image.mean((1, 2)), colour, atol=0.02)
    test = AnimalFacesDataset(animals, "test", size=16)
    assert test.class_names == ["n02138441"] and len(test) == 1
    assert AnimalFacesDataset(animals, "val", size=16).paths == test.paths


def test_animals_extracted_crops_equal_on_the_fly_crops(animals):
    on_the_fly = AnimalFacesDataset(animals, "train", size=16)
    _extract(animals)
    extracted = make_dataset("animals", "train", image_size=16, root=str(animals))
    assert isinstance(extracted, AnimalFacesDataset) and extracted.boxes is None
    assert extracted.paths[0] == str(animals / "animals" / ANIMALS["train"][0])
    for i in range(3):
        assert torch.equal(extracted[i][0], on_the_fly[i][0])


def test_animals_resize_then_centre_crop(animals):
    data = AnimalFacesDataset(animals, "train", size=16, resize=32)
    # entry 0: a 60 x 40 box -> 48 x 32 -> centre 16 x 16; compare with the same steps by hand
    crop = Image.open(data.paths[0]).convert("RGB").crop(data.boxes[0]).resize((48, 32), Image.BILINEAR)
    manual = torch.from_numpy(np.array(crop.crop((16, 8, 32, 24)))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(data[0][0], manual, atol=0.05)
    with pytest.raises(ValueError, match="resize"):
        AnimalFacesDataset(animals, "train", size=16, resize=8)


def test_animals_missing_files_are_named(animals):
    (animals / "animals_list_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="animals_list_test.txt") as e:
        AnimalFacesDataset(animals, "test", size=16)
    assert "\n" not in str(e.value)
    coordinates = animals / "animalface_coordinates.txt"
    coordinates.write_text("\n".join(coordinates.read_text().splitlines()[1:]))
    with pytest.raises(ValueError, match="no box for n02085620/n02085620_1152.JPEG_10_5_70_45.jpg"):
        AnimalFacesDataset(animals, "train", size=16)
    coordinates.unlink()
    with pytest.raises(FileNotFoundError, match="animalface_coordinates.txt"):
        AnimalFacesDataset(animals, "train", size=16)


# --- unlabelled folders --------------------------------------------------------------------------


def test_unlabelled_folder_ignores_sub_folders_and_pairs_at_random(tmp_path):
    for i in range(10):
        folder = tmp_path / "faces" / ("a" if i < 5 else "b/deeper")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 30), _colour(i)).save(folder / f"{i}.png")
    data = make_dataset("unlabelled", None, image_size=16, root=str(tmp_path / "faces"))
    assert isinstance(data, UnlabelledFolderDataset) and len(data) == 10
    assert not data.labelled and data.num_classes == 1 and data.labels.tolist() == [0] * 10
    assert data[9][0].shape == (3, 16, 16)
    parts = {s: UnlabelledFolderDataset(tmp_path / "faces", 16, s).paths for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [8, 1, 1] and len(set().union(*parts.values())) == 10
    pairs = PairDataset(data, supervised=False).__getitems__(list(range(6)))
    assert pairs["x1"].shape == (6, 3, 16, 16) and not torch.equal(pairs["x1"], pairs["x2"])


def test_datasets_from_disk_need_a_root_and_an_existing_folder(tmp_path):
    for name in ("celeba", "animals", "unlabelled"):
        with pytest.raises(ValueError, match="--data.root"):
            make_dataset(name, "train", 16)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CelebADataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        AnimalFacesDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no images"):
        UnlabelledFolderDataset(tmp_path)
