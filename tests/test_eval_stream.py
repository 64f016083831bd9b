"""Streaming evaluation: the images read do not grow with the split, files are read through worker
processes, and on datasets whose test classes are new (CelebA, Animal Faces) the class-transfer judge
learns the test identities from images that the test pairs never use."""
import json

import torch
from PIL import Image

from g2g.data.shapes import ShapesDataset
from g2g.evaluation.report import JUDGED_ON_TEST, judge_split, run_eval
from g2g.evaluation.split import EvalSettings, Judges, evaluate_split
from g2g.evaluation.stream import Subset, pooled, sample_indices
from g2g.inference import load
from helpers import tiny_model_file


class LazyImages(torch.utils.data.Dataset):
    """A big split whose images exist only when read (no `images` tensor): counts the reads."""

    def __init__(self, base: ShapesDataset, n: int):
        self.base, self.n = base, n
        self.labels = base.labels.repeat(n // len(base) + 1)[:n]
        self.num_classes, self.class_names = base.num_classes, base.class_names
        self.reads = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        return self.base.images[i % len(self.base)], int(self.labels[i])


def test_images_read_do_not_grow_with_the_split(tmp_path):
    model = load(tiny_model_file(tmp_path / "m.safetensors"))
    base = ShapesDataset("test", size=16, n=300, seed=0)
    s = EvalSettings(n_pairs=40, n_probe=60, k_shots=(1, 3), mlp_probes=False, dci_repeats=1, workers=0)
    reads = []
    for n in (600, 6000):
        ds = LazyImages(base, n)
        report = evaluate_split(model, ds, Judges(), s)
        reads.append(ds.reads)
        assert report["n_images"] == n and report["sample"]["images"] == 60 and report["n_pairs"] == 40
    # per pair x1, x2 and K − 1 = 2 others; the sample once; one read to learn the image size
    assert reads[0] == reads[1] == 40 * 4 + 60 + 1


def test_sample_is_the_whole_small_split_in_order_and_a_seeded_subset_of_a_big_one():
    assert sample_indices(5, 10, seed=3).tolist() == [0, 1, 2, 3, 4]
    big = sample_indices(1000, 10, seed=3)
    assert len(big.unique()) == 10 and big.tolist() == sorted(big.tolist())
    assert big.tolist() == sample_indices(1000, 10, seed=3).tolist() != sample_indices(1000, 10, seed=4).tolist()


def test_probe_codes_are_pooled_only_when_larger_than_eight_cells():
    assert pooled(torch.ones(2, 4, 8, 8)).shape == (2, 4, 8, 8)
    assert pooled(torch.ones(2, 4, 28, 28)).shape == (2, 4, 8, 8)
    assert pooled(torch.ones(2, 6)).shape == (2, 6)


def test_judge_split_halves_every_class_and_gives_a_lone_image_to_the_judge():
    labels = torch.tensor([0] * 5 + [1] * 4 + [2])
    judge, pairs = judge_split(labels, seed=0)
    assert sorted(judge.tolist() + pairs.tolist()) == list(range(10))
    assert torch.bincount(labels[judge], minlength=3).tolist() == [3, 2, 1]
    assert torch.bincount(labels[pairs], minlength=3).tolist() == [2, 2, 0]
    assert judge_split(labels, seed=1)[0].tolist() != judge.tolist()


def _celeba(root, identities=8, per_identity=6):
    """A CelebA folder: identities 1–4 in training, the rest in the test partition; JPEGs of 40 × 48."""
    (root / "img_align_celeba").mkdir(parents=True)
    partition, identity = [], []
    g = torch.Generator().manual_seed(0)
    for k in range(identities * per_identity):
        name, who = f"{k + 1:06d}.jpg", k // per_identity + 1
        colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=g))
        Image.new("RGB", (40, 48), colour).save(root / "img_align_celeba" / name)
        partition.append(f"{name} {0 if who <= identities // 2 else 2}\n")
        identity.append(f"{name} {who}\n")
    (root / "list_eval_partition.txt").write_text("".join(partition))
    (root / "identity_CelebA.txt").write_text("".join(identity))


def test_identity_dataset_is_judged_on_test_identities_from_other_images(tmp_path):
    _celeba(tmp_path / "celeba")
    path = tiny_model_file(tmp_path / "m.safetensors")
    report = run_eval(path, data="celeba", root=str(tmp_path / "celeba"), out_dir=tmp_path / "eval", n_pairs=30,
                      n_probe=20, classifier_steps=30, k_shots=(1, 2), mlp_probes=False, workers=2,
                      networks={"lpips": None, "inception": None})
    assert report["judge"]["fitted_on"] == JUDGED_ON_TEST
    assert report["judge"]["images"] == 12 and report["judge"]["real_test_images"] == 12  # 4 identities × 3
    assert report["test"]["n_images"] == 12 and report["test"]["class_transfer"]["chance"] == 0.25
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["test"]["sample"]["pairs"] == 30
    assert f"trained on {JUDGED_ON_TEST}" in saved["markdown"]


def test_subset_keeps_the_dataset_contract():
    base = ShapesDataset("test", size=16, n=50, seed=0)
    sub = Subset(base, torch.tensor([3, 7, 9]))
    assert len(sub) == 3 and sub.labels.tolist() == base.labels[[3, 7, 9]].tolist()
    assert torch.equal(sub[1][0], base[7][0]) and torch.equal(sub.factors, base.factors[[3, 7, 9]])
