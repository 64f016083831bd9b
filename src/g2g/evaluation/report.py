"""`g2g eval`: the disentanglement report of an exported model (JSON + Markdown).

Per split (seen and held-out classes on `shapes`; the test split elsewhere), on test pairs (x1, x2) of
different classes with m1 = G(a1, b2): reconstruction (short x̂, long r) and the reassembly ratio;
swap fidelity against the true render (shapes); class transfer judged by an independent classifier,
with one-shot and K-shot class codes; the copy-through alarm; code-cycle agreement; leakage probes
(linear and MLP) in both directions; block-level DCI (shapes); and, where their networks are on disk,
FID/KID, LPIPS and identity similarity. Every number comes with its chance or reference level and a
95 % interval: bootstrap over test pairs or images, or a t-interval over seeds (DCI) or disjoint
chunks (FID/KID). Library versions and settings travel with the numbers. Above them, one line says
whether the model collapsed (`collapse.diagnose` on test pairs of the first split).
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..files import atomic_write
from ..collapse import diagnose
from ..inference import G2GModel, load
from . import external as X
from . import metrics as M
from .markdown import to_markdown
from .pairs import make_pairs
from .split import EvalSettings, Judges, evaluate_split
from .stream import Subset, chunk_size, read_chunks, sample_indices

__all__ = ["EvalSettings", "Judges", "evaluate_split", "independent_classifier", "run_eval"]

# optimizer steps of the independent classifier: about a minute on two CPU threads at 32 px (and at
# most 15 epochs of its training images)
CLASSIFIER_STEPS = 4500
# the classifier trains on at most this many images (a seeded sample beyond), downsized to at most
# JUDGE_SIZE px a side, so its training set stays under 600 MB at any image size; accuracy on real
# images is measured on at most JUDGE_TEST_IMAGES
JUDGE_IMAGES, JUDGE_SIZE, JUDGE_TEST_IMAGES = 12000, 64, 3000
COLLAPSE_PAIRS = 64  # test pairs of the collapse check at the top of the report
LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "scikit-learn", "scipy",
             "safetensors", "torch-fidelity")
JUDGED_ON_TRAIN = "the training split"
JUDGED_ON_TEST = ("half of the images of each test class; the test pairs and K-shot references come from the "
                  "other half (the test classes are not among the training classes)")


class Downsized(nn.Module):
    """A judge that sees images at most `size` px a side (antialiased) whatever the model's size."""

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > self.size or x.shape[-2] > self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.net(x)


def judge_split(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (judge, pairs): half of each class's images (rounded up; a lone image goes to the judge)
    for the judge to learn the class from, the rest for the test pairs. Seeded, sorted."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    order = order[torch.argsort(labels[order], stable=True)]               # shuffled within each class
    classes, counts = labels.unique(return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    c = torch.searchsorted(classes, labels[order])
    rank = torch.arange(len(order)) - starts[c]
    to_judge = rank < (counts[c] + 1) // 2
    return order[to_judge].sort().values, order[~to_judge].sort().values


def _datasets(data: str, size: int, root: str | None, seed: int) -> dict:
    """The evaluation material per dataset: splits to evaluate and the classifier's training set."""
    from ..data.datamodule import GROUND_TRUTH, ground_truth_dataset, make_dataset
    if data in GROUND_TRUTH:  # shapes, scenes, parts: drawn from factors, so every swap has a true render
        built_in: Any = ground_truth_dataset(data)
        # the judge sees all classes (held-out ones included): it is not the model under test
        judge = built_in("val", size=size, n=12000, seed=seed, classes="all")
        judge_test = built_in("test", size=size, n=3000, seed=seed + 1, classes="all")
        return {"judge": judge, "judge_test": judge_test, "render": built_in.render,
                "factor_names": built_in.factor_names, "judged_on": JUDGED_ON_TRAIN,
                "splits": {"seen_classes": built_in("test", size=size, seed=seed, classes="seen"),
                           "heldout_classes": built_in("test", size=size, seed=seed, classes="heldout")}}
    train: Any = make_dataset(data, "train", size, root, seed)  # every dataset here has labels and class_names
    test: Any = make_dataset(data, "test", size, root, seed)
    if set(map(str, test.class_names or ())) <= set(map(str, train.class_names or ())):
        return {"judge": train, "judge_test": test, "render": None, "factor_names": (), "splits": {"test": test},
                "judged_on": JUDGED_ON_TRAIN}
    # test identities (CelebA, Animal Faces): a judge trained on the training identities cannot name them
    fit, pairs = judge_split(torch.as_tensor(test.labels), seed)
    test_pairs = Subset(test, pairs)
    return {"judge": Subset(test, fit), "judge_test": test_pairs, "render": None, "factor_names": (),
            "splits": {"test": test_pairs}, "judged_on": JUDGED_ON_TEST}


def _judge_tensors(ds, n: int, seed: int, workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded sample of at most n images of ds, downsized to at most JUDGE_SIZE px, with labels."""
    sample = sample_indices(len(ds), n, seed)
    size = int(ds[0][0].shape[-1])
    shrink, side = Downsized(nn.Identity(), JUDGE_SIZE), min(size, JUDGE_SIZE)
    chunks = list(sample.split(max(64, chunk_size(size))))  # read, then downsized at once
    images = torch.empty(len(sample), 3, side, side)  # filled in place: no second copy of the set
    start = 0
    for x in read_chunks(ds, chunks, workers):
        images[start:start + len(x)] = shrink(x)
        start += len(x)
    return images, torch.as_tensor(ds.labels)[sample]


def library_versions() -> dict:
    """Versions of Python, g2g and the libraries behind the numbers (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "g2g": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _load_judges(s: EvalSettings, identity, networks: dict, device) -> Judges:
    """External judges, each loaded from disk or injected through `networks` (tests; None leaves it out);
    a judge that is not there is None, with a line saying why."""
    judges = Judges()
    loaders = {"lpips": lambda: X.load_lpips(s.lpips_net), "inception": X.load_inception,
               "identity": (lambda: X.load_identity(identity)) if identity is not None else None}
    for name, loader in loaders.items():
        if name in networks and networks[name] is None:
            judges.skipped[name] = f"{name}: left out by the caller"
            continue
        if name in networks:
            net = networks[name]
        elif loader is None:
            judges.skipped[name] = "identity similarity: no identity network given (--identity FILE)"
            continue
        else:
            try:
                net = loader()
            except X.Unavailable as e:
                judges.skipped[name] = str(e)
                continue
        setattr(judges, name, net.to(device) if isinstance(net, torch.nn.Module) else net)
    return judges


def independent_classifier(data: str, size: int, root: str | None = None, seed: int = 0,
                           classifier_steps: int = CLASSIFIER_STEPS) -> torch.nn.Module | None:
    """The independent classifier that `run_eval(..., seed=seed)` trains for `data` at `size` px (None
    for data with one class), for callers that judge many models with one: networks={"classifier": ...}."""
    return _train_judge(_datasets(data, size, root, seed)["judge"], seed, classifier_steps)


def _train_judge(judge_set, seed: int, steps: int, workers: int | None = None) -> torch.nn.Module | None:
    x, y = _judge_tensors(judge_set, JUDGE_IMAGES, seed, workers)
    if len(y.unique()) < 2:
        return None
    n_cls = int(getattr(judge_set, "num_classes", int(y.max()) + 1))
    return Downsized(M.train_classifier(x, y, n_cls, seed=seed, max_steps=steps), JUDGE_SIZE).eval()


def collapse_check(model: G2GModel, ds, seed: int, workers: int | None = None) -> dict:
    """`collapse.diagnose` on COLLAPSE_PAIRS seeded test pairs of different classes of ds, as a dict with the
    verdict; forward passes of the pair pass's chunk size, so memory stays as flat."""
    i, j = make_pairs(torch.as_tensor(ds.labels), COLLAPSE_PAIRS, seed)
    x1, x2 = next(read_chunks(ds, [torch.cat([i, j])], workers)).to(model.device).split(len(i))
    found = diagnose(model.generator, x1, x2, chunk=chunk_size(model.config.image_size))
    return {**found.to_dict(), "pairs": len(i)}


def run_eval(model_path, data: str = "shapes", root: str | None = None, out_dir: str | Path = "outputs/eval",
             classifier_steps: int = CLASSIFIER_STEPS, identity: str | Path | None = None, device: str | None = None,
             networks: dict | None = None, **settings) -> dict:
    """Evaluate an exported model and write metrics.json and metrics.md to out_dir.

    settings: fields of EvalSettings (n_pairs, seed, k_shots, ...). classifier_steps: training steps of
    the independent classifier (at most 15 epochs of its images). identity: weight file of the
    VGGFace2 identity network. networks: judges to use instead of loading them ({"lpips", "inception",
    "identity"}: stand-ins in tests; None leaves one out) or training it ({"classifier"}: one from
    `independent_classifier`, shared by many evaluations). device: where the model and judges run
    (default: CUDA if present). On data "fonts", a section scores swaps against their true renders
    (`evaluation.fonts`). Memory stays flat in the size of the splits: images are read in chunks
    and the sample sizes are in the report.
    """
    start = time.monotonic()
    s = EvalSettings(**settings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load(model_path, device)
    size = model.config.image_size
    sets = _datasets(data, size, root, s.seed)
    networks = networks or {}
    judges = _load_judges(s, identity, networks, device)
    report: dict = {"model": str(model_path), "generator": model.config.to_dict(), "data": data, "image_size": size,
                    "seed": s.seed}
    given = networks.get("classifier")
    judges.classifier = given if given is not None else _train_judge(sets["judge"], s.seed, classifier_steps, s.workers)
    if judges.classifier is not None:
        judges.classifier = judges.classifier.to(device)
        tx, ty = _judge_tensors(sets["judge_test"], JUDGE_TEST_IMAGES, s.seed, s.workers)
        report["classifier_accuracy_real_test"] = (M.classify(judges.classifier, tx) == ty).float().mean().item()
        report["judge"] = {"fitted_on": sets["judged_on"], "images": min(len(sets["judge"]), JUDGE_IMAGES),
                           "image_size": min(size, JUDGE_SIZE), "real_test_images": len(ty)}
    first = next(iter(sets["splits"].values()))
    report["collapse"] = {**collapse_check(model, first, s.seed, s.workers), "split": next(iter(sets["splits"]))}
    for name, ds in sets["splits"].items():
        report[name] = evaluate_split(model, ds, judges, s, sets["render"], sets["factor_names"])
    if data == "fonts":  # every swap has a true render there: a section of its own (evaluation/fonts.py)
        from .fonts import JUDGE_STEPS, fonts_section
        report["fonts"] = fonts_section(model, root, size, s.seed, s.n_pairs, min(classifier_steps, JUDGE_STEPS),
                                        device)
    report["skipped"] = judges.skipped
    report["settings"] = {**asdict(s), "classifier_steps": "given" if given is not None else classifier_steps,
                          "device": str(device)}
    report["versions"] = library_versions()
    report["runtime_s"] = round(time.monotonic() - start, 1)
    report["markdown"] = to_markdown(report)
    out = Path(out_dir)
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
    atomic_write(out / "metrics.md", lambda tmp: Path(tmp).write_text(report["markdown"] + "\n"))
    return report
