"""The procedural datasets `scenes` and `parts`: determinism, ranges, class splits, exact true swaps, and
their way through the data module, `g2g train` and `g2g eval`."""
import pytest
import torch

from g2g.data import parts, scenes
from g2g.data.datamodule import G2GDataModule, ground_truth_dataset, make_dataset

MODULES = {"scenes": scenes, "parts": parts}
SIZE = 32


@pytest.fixture(params=sorted(MODULES))
def data(request):
    return MODULES[request.param]


def _factors(module, n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, len(module.FACTOR_NAMES), generator=torch.Generator().manual_seed(seed))


def test_class_sets(data):
    assert data.N_CLASSES == 30 and len(data.HELD_OUT_CLASSES) == 5 and len(data.SEEN_CLASSES) == 25
    assert not set(data.HELD_OUT_CLASSES) & set(data.SEEN_CLASSES)
    assert sorted(data.HELD_OUT_CLASSES + data.SEEN_CLASSES) == list(range(30))
    n_colours = len(data.SCHEME_NAMES) if data is scenes else data.N_PALETTES
    seen_parts = {(c // n_colours, c % n_colours) for c in data.SEEN_CLASSES}
    for c in data.HELD_OUT_CLASSES:  # each held-out class recombines a seen object and seen colours
        assert any(o == c // n_colours for o, _ in seen_parts) and any(k == c % n_colours for _, k in seen_parts)
    assert len(data.CLASS_NAMES) == 30 and len(set(data.CLASS_NAMES)) == 30


def test_dataset_is_seeded_in_range_and_labelled(data):
    cls = ground_truth_dataset(data.__name__.rsplit(".", 1)[1])
    a, b = cls("val", size=SIZE, n=300, seed=3), cls("val", size=SIZE, n=300, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.images, cls("val", size=SIZE, n=300, seed=4).images)
    assert not torch.equal(a.labels, cls("test", size=SIZE, n=300, seed=3).labels)  # splits: own streams
    assert a.images.shape == (300, 3, SIZE, SIZE) and a.images.dtype == torch.float32
    assert a.images.min() >= -1 and a.images.max() <= 1 and a.images.std() > 0.2
    assert a.factors.shape == (300, len(data.FACTOR_NAMES)) and 0 <= a.factors.min() and a.factors.max() <= 1
    assert set(a.labels.tolist()) == set(data.SEEN_CLASSES) and a.num_classes == 30
    counts = torch.bincount(a.labels, minlength=30)[list(data.SEEN_CLASSES)]
    assert counts.max() - counts.min() <= 1  # balanced
    held = cls("test", size=SIZE, n=50, classes="heldout")
    assert set(held.labels.tolist()) == set(data.HELD_OUT_CLASSES)
    with pytest.raises(ValueError, match="never trained on"):
        cls("train", size=SIZE, n=10, classes="heldout")
    image, label = a[0]
    assert image.shape == (3, SIZE, SIZE) and label == int(a.labels[0])


def test_render_rejects_bad_input(data):
    labels, factors = torch.zeros(2, dtype=torch.long), _factors(data, 2)
    with pytest.raises(ValueError, match="class_ids"):
        data.render(torch.tensor([0, 30]), factors, SIZE)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.render(labels, factors + 1, SIZE)
    with pytest.raises(ValueError, match="shape"):
        data.render(labels, factors[:, :4], SIZE)
    with pytest.raises(ValueError, match="size"):
        data.render(labels, factors, 8)


def _pairs(data, n: int = 64):
    gen = torch.Generator().manual_seed(1)
    y1 = torch.randint(0, 30, (n,), generator=gen)
    y2 = (y1 + torch.randint(1, 30, (n,), generator=gen)) % 30  # always another class
    return y1, y2, _factors(data, n, seed=1), _factors(data, n, seed=2)


def test_true_swap_keeps_x1s_background_and_pose_and_draws_x2s_object(data):
    y1, y2, f1, f2 = _pairs(data)
    x1, x2, swap = data.render(y1, f1, SIZE), data.render(y2, f2, SIZE), data.render(y2, f1, SIZE)
    bg1 = data.background(f1, SIZE)
    on_bg = ((swap - bg1).abs().amax(1) < 1e-6).float()  # (n, H, W): pixels no object covers
    object_x1 = ((x1 - bg1).abs().amax(1) > 1e-6).float()
    # where neither object is drawn, the swap is x1's background, pixel for pixel
    keep = (1 - object_x1) * on_bg
    assert float(((swap - x1).abs().amax(1) * keep).max()) == 0.0
    assert keep.mean() > 0.3  # and that is much of the image
    # x2's object (different class) replaces x1's: the swap differs from x1 and from x2 (x2's background)
    assert bool(((swap - x1).abs().amax((1, 2, 3)) > 0.1).all())
    assert float(((swap - x2).abs().amax(1) * on_bg).amax((1, 2)).min()) > 0.0
    # the swap's object sits where x1's object does: object centroids agree to within a few pixels
    grid = torch.arange(SIZE, dtype=torch.float32)

    def centroid(mask):  # (n, H, W) -> (n, 2)
        w = mask.sum((1, 2)).clamp(min=1)
        return torch.stack([(mask.sum(1) * grid).sum(1) / w, (mask.sum(2) * grid).sum(1) / w], 1)
    shift = (centroid(1 - on_bg) - centroid(object_x1)).norm(dim=1)
    assert float(shift.median()) < 0.15 * SIZE


def test_swap_draws_x2s_colours_and_changing_content_moves_nothing_else(data):
    y1, y2, f1, _ = _pairs(data, 16)
    swap = data.render(y2, f1, 64)
    colours = data.SCHEME_COLOURS if data is scenes else data.PALETTE_COLOURS
    n_colours = len(colours)
    for k in range(16):  # the first colour of x2's class (the fill / body) is drawn exactly somewhere
        colour = colours[int(y2[k]) % n_colours, 0] * 2 - 1
        assert float((swap[k] - colour.view(3, 1, 1)).abs().amax(0).min()) < 1e-5, k
    # the pose factors move the object and nothing else: same pose, another background -> same object pixels
    f_other = f1.clone()
    f_other[:, 4:] = _factors(data, 16, seed=5)[:, 4:]
    a, b = data.render(y2, f1, SIZE), data.render(y2, f_other, SIZE)
    same = (a - b).abs().amax(1) < 1e-6
    assert same.float().mean() < 0.9 and bool(same.any((1, 2)).all())


def test_objects_fit_the_frame(data):
    """The corners never show the object, even at the largest scale and any position and rotation."""
    n = 40
    factors = _factors(data, n, seed=7)
    factors[:, 2] = 1.0
    factors[:, 0] = torch.tensor([0.0, 1.0]).repeat(n // 2)
    factors[:, 1] = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(n // 4)
    labels = torch.arange(n) % 30
    image, bg = data.render(labels, factors, SIZE), data.background(factors, SIZE)
    corners = (image - bg)[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert float(corners.abs().max()) == 0.0


def test_datamodule_and_make_dataset(data):
    name = data.__name__.rsplit(".", 1)[1]
    dm = G2GDataModule(dataset=name, image_size=16, batch_size=4, steps_per_epoch=2, panel_size=2, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x1"].shape == (4, 3, 16, 16) and dm.num_classes == 30
    assert bool((batch["y1"] != batch["y2"]).all())
    panel = dm.panel_batch()
    assert panel["x1"].shape[0] == 2
    held = make_dataset(name, "val", 16, classes="heldout")
    assert set(torch.as_tensor(held.labels).tolist()) == set(data.HELD_OUT_CLASSES)


def test_train_cli_reaches_both_datasets(tmp_path):
    from helpers import write_train_config

    from g2g.cli import main
    for name in MODULES:
        config = write_train_config(tmp_path / f"{name}.yaml", tmp_path / name, dataset=name,
                                    trainer={"max_steps": 1}, data={"steps_per_epoch": 1})
        assert main(["train", "--config", config]) == 0, name


def _check_report(report: dict, name: str) -> None:
    assert report["data"] == name
    for split in ("seen_classes", "heldout_classes"):
        swap = report[split]["swap"]
        assert swap["psnr"] > 0 and "baseline_copy_content_source_psnr" in swap, (name, split)
        assert len(report[split]["dci"]["factors"]) == 1 + len(MODULES[name].FACTOR_NAMES)
    assert "swap PSNR vs true render" in report["markdown"]


def test_eval_writes_swap_metrics_for_both_datasets(tmp_path):
    """`g2g eval MODEL --data NAME`: seen and held-out splits, each scored against the true render."""
    import json

    from helpers import tiny_model_file

    from g2g.cli import main
    from g2g.evaluation.report import run_eval
    path = tiny_model_file(tmp_path / "model.safetensors")
    out = tmp_path / "eval-scenes"
    code = main(["eval", str(path), "--data", "scenes", "--out", str(out), "--pairs", "60", "--probe-images", "200",
                 "--classifier-steps", "30", "--k-shots", "1"])
    assert code == 0
    _check_report(json.loads((out / "metrics.json").read_text()), "scenes")
    report = run_eval(path, data="parts", out_dir=tmp_path / "eval-parts", classifier_steps=30, n_pairs=60,
                      n_probe=200, k_shots=(1,), mlp_probes=False, dci_repeats=1,
                      networks={"lpips": None, "inception": None})
    _check_report(report, "parts")
