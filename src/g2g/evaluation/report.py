"""`g2g eval`: the disentanglement report of an exported model (JSON + Markdown).

Per split (seen and held-out classes on `shapes`; the test split elsewhere), on test pairs (x1, x2) of
different classes with m1 = G(a1, b2): reconstruction (short x̂, long r) and the reassembly ratio;
swap fidelity against the true render (shapes); class transfer judged by an independent classifier,
with one-shot and K-shot class codes; the copy-through alarm; code-cycle agreement; leakage probes
(linear and MLP) in both directions; block-level DCI (shapes); and, where their networks are on disk,
FID/KID, LPIPS and identity similarity. Every number comes with its chance or reference level and a
95 % interval: bootstrap over test pairs or images, or a t-interval over seeds (DCI) or disjoint
chunks (FID/KID). Library versions and settings travel with the numbers.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..files import atomic_write
from ..inference import G2GModel, load
from ..wiring import g2g_forward
from . import external as X
from . import metrics as M
from .intervals import bootstrap_ci
from .markdown import to_markdown
from .pairs import batched, make_pairs, same_class_others
from .sections import agreement, copy_through, dci_blocks, fidelity, leakage, reassembly

# optimizer steps of the independent classifier: about a minute on two CPU threads at 32 px (and at
# most 15 epochs of its training images)
CLASSIFIER_STEPS = 4500
LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "scikit-learn", "scipy",
             "safetensors", "torch-fidelity")


@dataclass(frozen=True)
class EvalSettings:
    """What `g2g eval` measures per split and how much work it spends on it."""

    n_pairs: int = 2000                    # test pairs (x1, x2) of different classes
    seed: int = 0                          # pairs, references, probes, forests and bootstrap resamples
    k_shots: tuple[int, ...] = (1, 5)      # class references per class code for K-shot class transfer
    n_probe: int = 3000                    # images used by each probe and DCI fit
    mlp_probes: bool = True                # MLP probes besides the linear ones
    dci_repeats: int = 3                   # DCI fits with different seeds (the interval is over them)
    realism_images: int = 1000             # mixed images for FID/KID (and twice as many real ones)
    realism_chunks: int = 5                # disjoint chunks FID/KID are averaged over
    lpips_net: str = "alex"                # LPIPS backbone: alex | vgg | squeeze

    def __post_init__(self):
        if self.n_pairs < 1 or self.n_probe < 1 or self.dci_repeats < 1 or self.realism_chunks < 1:
            raise ValueError("n_pairs, n_probe, dci_repeats and realism_chunks must be at least 1")
        if not self.k_shots or min(self.k_shots) < 1:
            raise ValueError(f"k_shots must be class-reference counts ≥ 1, got {self.k_shots}")
        if self.lpips_net not in X.LPIPS_BACKBONES:
            raise ValueError(f"unknown LPIPS network {self.lpips_net!r}: choose one of {', '.join(X.LPIPS_BACKBONES)}")


@dataclass
class Judges:
    """Networks that judge the model; None where unavailable (the report says why)."""

    classifier: torch.nn.Module | None = None
    lpips: object | None = None            # (pred, target) → (N,) distances
    inception: torch.nn.Module | None = None
    identity: torch.nn.Module | None = None
    skipped: dict = field(default_factory=dict)


@torch.no_grad()
def _pair_pass(model: G2GModel, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """The G2G pass without training noise; keeps m1, r1, x̂1 and the codes of m1."""
    res = g2g_forward(model.generator, x1.to(model.device), x2.to(model.device))
    return res.m1, res.r1, res.x1_hat, res.a_m1, res.b_m1


def _few_shot(model, images, labels, i, j, others, m1, a1, x1_hat, target, judges, s) -> dict:
    """Class transfer with the class code of x2 replaced by the mean code of K images of its class:
    x2 and K − 1 others (FUNIT's K-shot protocol; K = 1 is m1 itself)."""
    out = {}
    for k in s.k_shots:
        if k == 1:
            m = m1
        else:
            refs = torch.cat([j[:, None], others[:, :k - 1]], 1)             # (n, K)
            b = batched(lambda r: model.encode_class(images[r]), refs)       # (n, D) mean over K
            m = batched(model.decode, a1, b)
        entry = {"k": k}
        if judges.classifier is not None:
            hit = (M.classify(judges.classifier, m) == labels[j]).float()
            entry["class_transfer"] = {"accuracy": hit.mean().item(), "ci95": list(bootstrap_ci(hit, seed=s.seed)),
                                       "chance": 1.0 / len(labels.unique())}
        if target is not None:
            psnr = M.per_image_psnr(m, target)
            entry["swap_psnr"] = {"psnr": psnr.mean().item(), "ci95": list(bootstrap_ci(psnr, seed=s.seed))}
        entry["copy_through"] = copy_through(m, images[i], x1_hat, target, s.seed)
        out[f"k{k}"] = entry
    return out


def _realism(m1, images, judges, s) -> dict:
    n = min(s.realism_images, len(m1), len(images) // 2)
    if n < 2 * s.realism_chunks:
        return {"skipped": f"FID/KID: too few images ({len(images)} real, {len(m1)} mixed) for "
                           f"{s.realism_chunks} chunks of at least 2"}
    return X.realism(m1, images, judges.inception, n, s.realism_chunks, s.seed)


def _identity(m1, x1, x2, x2_other, judges, s) -> dict:
    """Cosine of identity features of m1 and x2, against the levels of unrelated and same-class pairs."""
    f = [X.features_of(judges.identity, t) for t in (m1, x1, x2, x2_other)]
    out = agreement(f[0], f[2], unrelated=f[1], same=f[3], seed=s.seed)
    out["to_content_source"] = M.cosine_agreement(f[0], f[1])
    return out


def evaluate_split(model: G2GModel, images: torch.Tensor, labels: torch.Tensor, judges: Judges,
                   s: EvalSettings = EvalSettings(), factors: torch.Tensor | None = None, render=None,
                   factor_names: tuple[str, ...] = ()) -> dict:
    """Every metric of one split. images (N, 3, H, W) in [-1, 1]; labels (N,); factors (N, F) with
    factor_names; render(class_ids, factors, size) draws the true mixed images (shapes)."""
    i, j = make_pairs(labels, s.n_pairs, s.seed)
    x1, x2 = images[i], images[j]
    content, class_code = batched(model.encode, images)                     # (N, C, h, w), (N, D)
    x_hat = batched(model.decode, content, class_code)                      # short reconstructions
    m1, r1, x1_hat, a_m1, b_m1 = batched(lambda a, b: _pair_pass(model, a, b), x1, x2)
    others = same_class_others(labels, j, max(max(s.k_shots), 2) - 1, s.seed)  # (n, K − 1) of x2's class
    target = render(labels[j], factors[i], images.shape[-1]) if render is not None and factors is not None else None
    res: dict[str, Any] = {"n_images": len(images), "n_pairs": len(i)}
    res["short_reconstruction"] = fidelity(x_hat, images, judges.lpips, s.seed, flat=True)
    res["long_reconstruction"] = fidelity(r1, x1, judges.lpips, s.seed)
    res["double_swap_to_short_ratio"] = res["long_reconstruction"]["l1"] / max(res["short_reconstruction"]["l1"], 1e-12)
    res["reassembly"] = reassembly(r1, x1_hat, x1, s.seed)
    if target is not None:
        res["swap"] = fidelity(m1, target, judges.lpips, s.seed, flat=True, copy_source=x1)
    if judges.classifier is not None:
        shown = M.classify(judges.classifier, m1)
        hit = (shown == labels[j]).float()
        res["class_transfer"] = {"accuracy": hit.mean().item(), "ci95": list(bootstrap_ci(hit, seed=s.seed)),
                                 "content_source_class_rate": (shown == labels[i]).float().mean().item(),
                                 "chance": 1.0 / len(labels.unique())}
    res["few_shot"] = _few_shot(model, images, labels, i, j, others, m1, content[i], x1_hat, target, judges, s)
    res["copy_through"] = copy_through(m1, x1, x1_hat, target, s.seed)
    res["code_cycle"] = {  # codes centred by the split's mean code
        "class": agreement(b_m1, class_code[j], unrelated=class_code[i], same=class_code[others[:, 0]],
                           center=class_code.mean(0), seed=s.seed),
        "content": agreement(a_m1, content[i], unrelated=content[j], center=content.mean(0), seed=s.seed)}
    res.update(leakage(content, class_code, labels, factors, s.n_probe, s.mlp_probes, s.seed))
    if factors is not None:
        res["dci"] = dci_blocks(content, class_code, labels, factors, factor_names, s.n_probe, s.dci_repeats, s.seed)
    if judges.inception is not None:
        res["realism"] = _realism(m1, images, judges, s)
    if judges.identity is not None:
        res["identity_similarity"] = _identity(m1, x1, x2, images[others[:, 0]], judges, s)
    return res


def _datasets(data: str, size: int, root: str | None, seed: int) -> dict:
    """The evaluation material per dataset: splits to evaluate and the classifier's training set."""
    from ..data.datamodule import make_dataset
    if data == "shapes":
        from ..data.shapes import FACTOR_NAMES, ShapesDataset, render
        # the judge sees all 30 classes (held-out ones included): it is not the model under test
        judge = ShapesDataset("val", size=size, n=12000, seed=seed, classes="all")
        judge_test = ShapesDataset("test", size=size, n=3000, seed=seed + 1, classes="all")
        return {"judge": judge, "judge_test": judge_test, "render": render, "factor_names": FACTOR_NAMES,
                "splits": {"seen_classes": ShapesDataset("test", size=size, seed=seed, classes="seen"),
                           "heldout_classes": ShapesDataset("test", size=size, seed=seed, classes="heldout")}}
    train = make_dataset(data, "train", size, root, seed)
    test = make_dataset(data, "test", size, root, seed)
    return {"judge": train, "judge_test": test, "render": None, "factor_names": (), "splits": {"test": test}}


def _tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    images = getattr(ds, "images", None)
    if images is None:
        images = torch.stack([ds[i][0] for i in range(len(ds))])
    return images, torch.as_tensor(ds.labels)


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


def _train_judge(judge_set, seed: int, steps: int) -> torch.nn.Module | None:
    x, y = _tensors(judge_set)
    if len(y.unique()) < 2:
        return None
    n_cls = int(getattr(judge_set, "num_classes", int(y.max()) + 1))
    return M.train_classifier(x, y, n_cls, seed=seed, max_steps=steps)


def run_eval(model_path, data: str = "shapes", root: str | None = None, out_dir: str | Path = "outputs/eval",
             classifier_steps: int = CLASSIFIER_STEPS, identity: str | Path | None = None, device: str | None = None,
             networks: dict | None = None, **settings) -> dict:
    """Evaluate an exported model and write metrics.json and metrics.md to out_dir.

    settings: fields of EvalSettings (n_pairs, seed, k_shots, ...). classifier_steps: training steps of
    the independent classifier (at most 15 epochs of its images). identity: weight file of the
    VGGFace2 identity network. networks: judges to use instead of loading them ({"lpips", "inception",
    "identity"}: stand-ins in tests; None leaves one out) or training it ({"classifier"}: one from
    `independent_classifier`, shared by many evaluations). device: where the model and judges run
    (default: CUDA if present).
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
    judges.classifier = given if given is not None else _train_judge(sets["judge"], s.seed, classifier_steps)
    if judges.classifier is not None:
        tx, ty = _tensors(sets["judge_test"])
        report["classifier_accuracy_real_test"] = (M.classify(judges.classifier, tx) == ty).float().mean().item()
    for name, ds in sets["splits"].items():
        x, y = _tensors(ds)
        report[name] = evaluate_split(model, x, y, judges, s, getattr(ds, "factors", None), sets["render"],
                                      sets["factor_names"])
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
