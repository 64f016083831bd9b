"""`g2g` command line: train, swap, grid, interp, eval, export, demo, identity, bench, app.

`train` is a LightningCLI (typed options from the module and data constructors, YAML presets,
overrides); the other subcommands are plain argparse and do not import Lightning, so they start fast.
User mistakes print one line (`g2g: error: ...`) and exit with status 2; so does a numerical fault that
stops training (NaN/Inf loss or gradient)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .configs import preset_args


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): `g2g swap: error: ... (see `g2g swap --help`)`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _one_line(e: BaseException) -> str:
    """The message of an exception on one line. A DataLoader worker's error carries the worker's whole
    traceback: keep its last line, which is the original message."""
    text = str(e).strip() or type(e).__name__
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


# ---- train ----

def train(argv: list[str]) -> int:
    """Everything after `g2g train` goes to LightningCLI; `--preset NAME` is `--config FILE` for each of
    the preset's files (an overlay: its base first)."""
    argv = list(argv)
    if "--preset" in argv:
        i = argv.index("--preset")
        if i + 1 >= len(argv):
            raise ValueError("--preset needs a name, e.g. --preset g2g")
        argv[i:i + 2] = preset_args(argv[i + 1])
    from .training import run_training
    return run_training(argv)


# ---- swap / grid ----

def _load_images(paths: list[str], config):
    """Images as the model expects them: FUNIT models get FUNIT's test-time transform (both sides
    resized to image_size, no crop), G2G models a resize of the shorter side and a centre crop.
    `config` is an ArchConfig or a plain side length in pixels (centre crop)."""
    import torch
    from .data.datasets import load_image
    from .data.files import IMAGE_EXTENSIONS
    size, crop = (config, True) if isinstance(config, int) else (config.image_size, config.crops)
    images = []
    for p in paths:
        try:
            images.append(load_image(p, size, crop=crop))
        except ValueError as e:
            if not str(e).startswith("cannot read image"):
                raise
            raise ValueError(f"{e}; give an image file ({', '.join(IMAGE_EXTENSIONS)})") from None
    return torch.stack(images)


def swap(args: argparse.Namespace) -> int:
    from torchvision.utils import save_image
    import torch
    from .inference import load
    model = load(args.model)
    x = _load_images([args.image1, args.image2], model.config)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for m1, m2, r1, r2 and panel.png")
    res = model.swap(x[:1], x[1:])
    out.mkdir(parents=True, exist_ok=True)
    images = {"m1": res.m1, "m2": res.m2, "r1": res.r1, "r2": res.r2}
    for name, img in images.items():
        save_image(img * 0.5 + 0.5, out / f"{name}.png")
    # panel rows: originals (x1, x2), mixed (m1, m2), long reconstructions (r1, r2)
    panel = torch.cat([x[:1], x[1:], res.m1, res.m2, res.r1, res.r2]).cpu()
    save_image(panel * 0.5 + 0.5, out / "panel.png", nrow=2, padding=2)
    print(f"wrote m1, m2, r1, r2 and panel.png to {out}")
    return 0


def grid(args: argparse.Namespace) -> int:
    from torchvision.utils import save_image
    from .inference import load
    if len(args.images) < 2:
        raise ValueError("grid needs two or more images: row i takes the class of image i, "
                         "column j the content of image j")
    model = load(args.model)
    x = _load_images(args.images, model.config)
    g = model.grid(x)  # (N, N, 3, H, W): row i = class of image i, column j = content of image j
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(g.flatten(0, 1).cpu() * 0.5 + 0.5, args.out, nrow=len(args.images))
    print(f"wrote {args.out} (rows: class of image i, columns: content of image j)")
    return 0


def interp(args: argparse.Namespace) -> int:
    import torch
    from torchvision.utils import save_image
    from .inference import load
    model = load(args.model)
    x = _load_images([args.image_a, args.image_b], model.config)
    strip = model.interpolate(x[:1], x[1:], args.steps, code=args.code).cpu()  # (steps, 3, H, W)
    if args.show_inputs:
        strip = torch.cat([x[:1], strip, x[1:]])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(strip * 0.5 + 0.5, args.out, nrow=len(strip))
    print(f"wrote {args.out} ({args.steps} images: the {args.code} code of A blended into B's)")
    return 0


# ---- eval / export ----

def evaluate(args: argparse.Namespace) -> int:
    from .evaluation.report import run_eval
    report = run_eval(args.model, data=args.data, root=args.root, out_dir=args.out, seed=args.seed,
                      n_pairs=args.pairs, classifier_steps=args.classifier_steps, identity=args.identity,
                      k_shots=tuple(args.k_shots), n_probe=args.probe_images, workers=args.workers)
    print(report["markdown"])
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'metrics.md'}")
    return 0


def export(args: argparse.Namespace) -> int:
    from .checkpoint import export_checkpoint  # no Lightning import: starts in seconds
    model = Path(args.checkpoint)
    if args.onnx is None and model.suffix == ".safetensors":
        raise ValueError(f"{model} is an exported model; add --onnx DIR to write its ONNX graphs, or give a "
                         f"training checkpoint (.ckpt)")
    if args.onnx is None or model.suffix == ".ckpt":
        model = export_checkpoint(args.checkpoint, args.out)
        print(f"wrote {model} and {model.with_suffix('.json')}")
    if args.onnx is not None:
        from .inference import load
        from .onnx_export import export_onnx
        described = export_onnx(load(model), args.onnx)
        fit = ("; the pose fit is not exported: the content encoder gives the encoder's pose"
               if described["pose_fit"] == "not exported" else "")
        files = ", ".join(g["file"] for g in described["graphs"].values())
        print(f"wrote {files} and onnx.json to {args.onnx}{fit}")
    return 0


def identity(args: argparse.Namespace) -> int:
    import torch
    from .networks.identity import INPUT_SIZE, IdentityNet
    net = IdentityNet.from_file(args.weights)
    with torch.no_grad():
        f = net(_load_images([args.image1, args.image2], INPUT_SIZE))  # (2, 2048)
    cosine = torch.nn.functional.cosine_similarity(f[:1], f[1:]).item()
    print(f"cosine similarity: {cosine:.4f}")
    print(f"L2 distance: {(f[0] - f[1]).norm().item():.4f}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(args.out, args.preset, args.overrides)
    return 0


def bench(args: argparse.Namespace) -> int:
    from .bench import bench_main
    return bench_main(args)


def models(args: argparse.Namespace) -> int:
    from .models import listing
    print(listing())
    return 0


def app(args: argparse.Namespace) -> int:
    from .app import serve  # standard library HTTP server: no extra dependency
    return serve(args.model, host=args.host, port=args.port, data=args.data)


def add_app(sub) -> None:
    a = sub.add_parser("app", help="a local web page: swap, K references, grid, interpolation")
    a.add_argument("--model", required=True,
                   help="exported model (.safetensors or its folder) or a bundled model name (`g2g models`)")
    a.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    a.add_argument("--port", type=int, default=7860, help="port (default: %(default)s; 0: a free one)")
    a.add_argument("--data", default=None, choices=["shapes", "digits"],
                   help="built-in data to draw random images from (default: the bundled model's, else shapes)")
    a.set_defaults(func=app)


def add_swap_and_grid(sub) -> None:
    s = sub.add_parser("swap", help="mix two images both ways and reassemble them")
    s.add_argument("image1", help="gives the content of m1 and the class of m2")
    s.add_argument("image2", help="gives the content of m2 and the class of m1")
    s.add_argument("--model", required=True,
                   help="exported model (.safetensors or its folder), a bundled model name (`g2g models`) "
                        "or a FUNIT generator checkpoint (.pt)")
    s.add_argument("--out", default="outputs/swap", help="output folder (default: %(default)s)")
    s.set_defaults(func=swap)

    g = sub.add_parser("grid", help="class × content matrix of a set of images")
    g.add_argument("images", nargs="+", help="two or more image files")
    g.add_argument("--model", required=True,
                   help="exported model (.safetensors or its folder) or a bundled model name (`g2g models`)")
    g.add_argument("--out", default="outputs/grid.png", help="output PNG (default: %(default)s)")
    g.set_defaults(func=grid)

    n = sub.add_parser("interp", help="a strip of images blending the class (or content) code of A into B's")
    n.add_argument("image_a", help="gives the content code (--code class) or the class code (--code content)")
    n.add_argument("image_b", help="gives the code blended towards")
    n.add_argument("--model", required=True,
                   help="exported model (.safetensors or its folder) or a bundled model name (`g2g models`)")
    n.add_argument("--out", default="outputs/interp.png", help="output PNG (default: %(default)s)")
    n.add_argument("--steps", type=int, default=8,
                   help="images in the strip, both ends included (default: %(default)s)")
    n.add_argument("--code", default="class", choices=["class", "content"],
                   help="the code blended (default: %(default)s)")
    n.add_argument("--show-inputs", action="store_true", help="draw A and B at the strip's ends too")
    n.set_defaults(func=interp)

def add_eval_and_export(sub) -> None:
    e = sub.add_parser("eval", help="disentanglement metrics of a model (JSON + Markdown)")
    e.add_argument("model", help="exported model (.safetensors or its folder) or a bundled model name")
    e.add_argument("--data", default="shapes", choices=["shapes", "scenes", "parts", "digits", "folder", "unlabelled",
                                                        "celeba", "animals", "fonts"])
    e.add_argument("--root", default=None, help="dataset folder for the datasets read from disk")
    e.add_argument("--out", default="outputs/eval", help="output folder (default: %(default)s)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--pairs", type=int, default=2000, help="test pairs to evaluate (default: %(default)s)")
    e.add_argument("--probe-images", type=int, default=3000,
                   help="images (a seeded sample of bigger splits) for the short reconstructions, probes and DCI "
                        "(default: %(default)s)")
    e.add_argument("--workers", type=int, default=None,
                   help="image-reading processes (default: as training, none for built-in data)")
    e.add_argument("--classifier-steps", type=int, default=4500,
                   help="training steps of the independent classifier (default: %(default)s)")
    e.add_argument("--identity", default=None, metavar="FILE",
                   help="VGGFace2 resnet50_ft weights: adds identity similarity of m1 to x2 (default: skipped)")
    e.add_argument("--k-shots", type=int, nargs="+", default=[1, 5], metavar="K",
                   help="class references per class code for K-shot class transfer (default: 1 5)")
    e.set_defaults(func=evaluate)

    x = sub.add_parser("export", help="write the EMA generator of a training checkpoint as safetensors + JSON "
                                      "(and a model as ONNX graphs)")
    x.add_argument("checkpoint", help="training checkpoint (.ckpt); with --onnx also an exported model")
    x.add_argument("--out", default="model.safetensors", help="output file (default: %(default)s)")
    x.add_argument("--onnx", default=None, metavar="DIR",
                   help="also write the encoders, the decoder and the swap as ONNX graphs to DIR")
    x.set_defaults(func=export)
    d = sub.add_parser("demo", help="train the g2g preset on built-in shapes, evaluate, write figures")
    d.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    d.add_argument("--preset", default="g2g", help="training preset (default: %(default)s)")
    d.add_argument("overrides", nargs="*", help="extra `g2g train` options, e.g. --trainer.max_time=00:00:02:00")
    d.set_defaults(func=demo)


def _worker_counts(text: str) -> list[int]:
    """`--workers 0,1,2` -> [0, 1, 2]."""
    parts = text.split(",")
    if not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"worker counts separated by commas (e.g. 0,1,2), not {text!r}")
    return [int(part) for part in parts]


def add_bench_and_identity(sub) -> None:
    b = sub.add_parser("bench", help="speed of the training step of a preset (JSON + one-line summary)")
    b.add_argument("--preset", default="g2g", help="training preset (default: %(default)s)")
    b.add_argument("--size", type=int, default=32, help="image side in pixels (default: %(default)s)")
    b.add_argument("--batch", type=int, default=16,
                   help="images per step, an even number: batch 4 = 2 pairs, as the original counted "
                        "(default: %(default)s)")
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    b.add_argument("--steps", type=int, default=10, help="timed steps (default: %(default)s)")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: %(default)s)")
    b.add_argument("--data", default="random", metavar="random|preset|DIR",
                   help="one random batch (step alone), the preset's data module, or a dataset folder: its loader "
                        "timed alone per worker count, beside the step (default: %(default)s)")
    b.add_argument("--precision", default=None,
                   help="Lightning precision (default: bf16-mixed on cuda, 32-true on cpu)")
    b.add_argument("--compile", action="store_true", help="torch.compile the networks")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.channels_last=true (repeatable)")
    b.add_argument("--out", default=None,
                   help="write the result as JSON to this file (.jsonl: append one line per run)")
    b.add_argument("--profile", default=None, metavar="DIR", help="write a torch profiler trace of 2 steps here")
    b.add_argument("--workers", type=_worker_counts, default=None, metavar="N,N,...",
                   help="with --data DIR: loader worker counts to time (default: 0,1,2 and one per core)")
    b.add_argument("--loader-batches", type=int, default=None,
                   help="with --data DIR: timed loader batches per worker count (default: 20)")
    b.add_argument("--step-data", default=None, choices=["random", "folder"],
                   help="with --data DIR: time the step on one random batch (the step alone; default) or fed "
                        "by the folder's loader (as training runs)")
    b.add_argument("--step-images-per-s", type=float, default=None, metavar="X",
                   help="with --data DIR: compare with this step rate (images/s, 2 per pair, as `g2g bench` "
                        "reports it, e.g. measured on a GPU) instead of timing the step")
    b.set_defaults(func=bench)

    i = sub.add_parser("identity", help="face identity similarity of two images (VGGFace2 ResNet-50 features)")
    i.add_argument("image1", help="first face image (resized to 224 px, centre-cropped)")
    i.add_argument("image2", help="second face image")
    i.add_argument("--weights", required=True, help="VGGFace2 resnet50_ft PyTorch state dict (.pth), as published")
    i.set_defaults(func=identity)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="g2g", description="Class/content disentanglement by cross-training.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("train", help="train a model (LightningCLI: `g2g train --help`)", add_help=False)
    add_swap_and_grid(sub)
    add_eval_and_export(sub)
    add_bench_and_identity(sub)
    add_app(sub)
    sub.add_parser("models", help="list the bundled models and their `g2g eval` metrics").set_defaults(func=models)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "train":
            return train(argv[1:])
        parser = build_parser()
        if argv and argv[0] == "demo":  # options the demo does not know go to `g2g train`
            args, unknown = parser.parse_known_args(argv)
            args.overrides = [*unknown, *args.overrides]
        else:
            args = parser.parse_args(argv)
        return args.func(args)
    # user mistakes (bad values, missing or unwritable paths) and NaN/Inf in training
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"g2g: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
