"""The bad-input cases of the robustness checks, shared by tests/test_robustness.py and
benchmarks/robustness.py (which writes docs/robustness.md from them): images, model files, options,
config files, dataset folders, checkpoints. Every case runs through the real entry point `g2g.cli.main`
and must end in one `error:` line and a non-zero exit, or be handled (exit 0)."""
from __future__ import annotations

import io
import json
import logging
import pickle
import re
import struct
import warnings
import zlib
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from g2g.cli import main
from g2g.data.datamodule import DATASETS
from g2g.inference import CONFIG_KEY, export_generator
from g2g.networks.generator import Generator, generator_config
from helpers import TINY, write_train_config

# --- the material: good and bad files ------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand: for headers Pillow will not write (huge sizes, 16-bit RGB)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def rgb_image(seed: int, size=(24, 20)) -> Image.Image:
    """A random RGB image of size (width, height), the same for the same seed."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _image_files(d: Path) -> dict[str, Path]:
    d.mkdir()
    rgb = rgb_image(1)
    rgb.save(d / "ok.png")
    rgb.save(d / "ok.jpg", quality=90)
    png, jpg = (d / "ok.png").read_bytes(), (d / "ok.jpg").read_bytes()
    files = {}

    def put(name: str, data: bytes | None = None, image: Image.Image | None = None, **save) -> None:
        files[name] = d / name
        if image is not None:
            image.save(files[name], **save)
        else:
            files[name].write_bytes(data)

    put("empty.png", b"")
    put("notes.png", b"these are my notes, not an image\n")
    put("random.jpg", np.random.default_rng(2).bytes(3000))
    put("truncated.png", png[: len(png) // 2])
    put("truncated.jpg", jpg[: len(jpg) // 2])
    put("corrupt.png", png[:100] + bytes(40) + png[140:])
    put("corrupt.jpg", jpg[:400] + bytes(60) + jpg[460:])
    put("header_only.png", png[:33])
    put("bomb.png", _raw_png(50_000, 50_000, 8, 2, b"\0" * 100))
    put("sliver.png", _raw_png(9, 9_000_000, 8, 2, b"\0" * 100))
    put("grey.png", image=rgb.convert("L"))
    put("rgba.png", image=rgb.convert("RGBA"))
    put("palette.png", image=rgb.convert("P"))
    put("palette_transparent.png", image=rgb.convert("P"), transparency=0)
    put("bilevel.png", image=rgb.convert("1"))
    put("grey_alpha.png", image=rgb.convert("LA"))
    put("grey16.png", image=Image.fromarray(np.random.default_rng(3).integers(0, 65536, (20, 24)).astype(np.uint16)))
    rows = np.random.default_rng(4).integers(0, 65536, (20, 24 * 3)).astype(">u2")
    put("rgb16.png", _raw_png(24, 20, 16, 2, b"".join(b"\0" + r.tobytes() for r in rows)))
    put("cmyk.jpg", image=rgb.convert("CMYK"))
    put("float.tif", image=Image.fromarray(np.random.default_rng(5).random((20, 24)).astype(np.float32)))
    put("one_pixel.png", image=rgb.resize((1, 1)))
    put("strip.png", image=rgb.resize((200, 3)))
    frames = [rgb.convert("P"), rgb.rotate(90).convert("P")]
    put("animated.gif", image=frames[0], save_all=True, append_images=frames[1:])
    put("photo.webp", image=rgb)
    put("photo.bmp", image=rgb)
    files["ok.png"], files["other.png"] = d / "ok.png", d / "other.png"
    rgb_image(7).save(files["other.png"])
    return files


class _Exploit:
    """Unpickling this creates `path`: a stand-in for arbitrary code (os.system etc.)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _model_files(d: Path, good: Path, ckpt: Path, marker: Path) -> dict[str, Path]:
    d.mkdir()
    gen = Generator(generator_config(**TINY))
    state = {k: v.contiguous() for k, v in gen.state_dict().items()}
    data = good.read_bytes()
    files = {"empty_dir": d / "empty_dir"}
    files["empty_dir"].mkdir()
    files["random.safetensors"] = d / "random.safetensors"
    files["random.safetensors"].write_bytes(np.random.default_rng(6).bytes(5000))
    files["truncated.safetensors"] = d / "truncated.safetensors"
    files["truncated.safetensors"].write_bytes(data[: len(data) // 2])
    files["weights.pt"] = d / "weights.pt"
    torch.save(state, files["weights.pt"])
    files["evil.pt"] = d / "evil.pt"
    files["evil.pt"].write_bytes(pickle.dumps({"state_dict": {}, "x": _Exploit(marker)}, protocol=2))
    files["no_config.safetensors"] = d / "no_config.safetensors"
    save_file(state, str(files["no_config.safetensors"]))
    wider = json.dumps({**generator_config(**TINY).to_dict(), "nf": 8})
    files["other_config.safetensors"] = d / "other_config.safetensors"
    save_file(state, str(files["other_config.safetensors"]), metadata={CONFIG_KEY: wider})
    files["bad_json.safetensors"] = d / "bad_json.safetensors"
    save_file(state, str(files["bad_json.safetensors"]), metadata={CONFIG_KEY: "{nf: 4"})
    files["ckpt"] = ckpt
    return files


def _checkpoint_files(d: Path, ckpt: Path, model: Path, marker: Path) -> dict[str, Path]:
    d.mkdir()
    data = ckpt.read_bytes()
    files = {"dir": d}
    files["random.ckpt"] = d / "random.ckpt"
    files["random.ckpt"].write_bytes(np.random.default_rng(8).bytes(5000))
    files["truncated.ckpt"] = d / "truncated.ckpt"
    files["truncated.ckpt"].write_bytes(data[: len(data) // 2])
    files["evil.ckpt"] = d / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Exploit(marker)}, files["evil.ckpt"])
    files["plain.ckpt"] = d / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, files["plain.ckpt"])
    files["model"] = model
    files["good"] = ckpt
    return files


def _folders(d: Path, images: dict[str, Path]) -> dict[str, Path]:
    """Dataset folders: a good small one (12×10 px images, smaller than the 16 px model) and broken ones."""
    small = [rgb_image(10 + i, size=(12, 10)) for i in range(8)]
    f = {name: d / name for name in ("good", "flat", "one_class", "empty_class", "mixed", "corrupt", "empty")}
    for name in f:
        f[name].mkdir(parents=True)
    for c in ("cat", "dog"):
        (f["good"] / c).mkdir()
        for k in range(4):
            small[k + 4 * (c == "dog")].save(f["good"] / c / f"{k}.png")
    for k, img in enumerate(small):
        img.save(f["flat"] / f"{k}.png")
    (f["one_class"] / "cat").mkdir()
    for k in range(4):
        small[k].save(f["one_class"] / "cat" / f"{k}.png")
    (f["empty_class"] / "cat").mkdir()
    (f["empty_class"] / "dog").mkdir()
    small[0].save(f["empty_class"] / "cat" / "0.png")
    (f["mixed"] / "cat").mkdir()
    small[0].save(f["mixed"] / "cat" / "0.png")
    small[1].save(f["mixed"] / "loose.png")
    for c in ("cat", "dog"):
        (f["corrupt"] / c).mkdir()
        small[0 + 2 * (c == "dog")].save(f["corrupt"] / c / "a.png")
    (f["corrupt"] / "cat" / "b.png").write_bytes(images["truncated.png"].read_bytes())
    small[3].save(f["corrupt"] / "dog" / "b.png")
    f["celeba_no_lists"] = d / "celeba_no_lists"  # images where CelebA keeps them, but no list files
    (f["celeba_no_lists"] / "img_align_celeba").mkdir(parents=True)
    for k in range(4):
        small[k].save(f["celeba_no_lists"] / "img_align_celeba" / f"{k + 1:06d}.jpg")
    f["file"] = images["ok.png"]
    return f


def build_material(root: Path, ckpt: Path) -> SimpleNamespace:
    """Every file and folder the cases use, under root; ckpt is a tiny training checkpoint (30 classes)."""
    marker = root / "pwned"  # created if any pickled payload ever runs
    torch.manual_seed(0)
    model = export_generator(Generator(generator_config(**TINY)).eval(), root / "model" / "model.safetensors")
    images = _image_files(root / "images")
    folders = _folders(root / "data", images)
    config = write_train_config(root / "tiny.yaml", root / "runs", dataset="folder",
                                trainer={"max_steps": 2}, checkpoint={"every_n_train_steps": 1},
                                data={"root": str(folders["good"]), "batch_size": 2, "steps_per_epoch": 2})
    (root / "not_yaml.yaml").write_text("model: [unclosed\n  : :\n")
    (root / "unknown_key.yaml").write_text("model:\n  lambda_shortt: 1.0\n")
    (root / "taken").write_text("")
    (root / "outdir").mkdir()
    return SimpleNamespace(root=root, marker=marker, model=str(model), images=images, folders=folders,
                           config=config, models=_model_files(root / "models", model, ckpt, marker),
                           ckpts=_checkpoint_files(root / "ckpts", ckpt, model, marker))


# --- the cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    area: str
    what: str                                  # the bad input, as the table shows it
    argv: Callable[[SimpleNamespace], list]    # the command line, built from the material above
    expect: tuple[str, ...] = ()               # fragments of the error line; empty: must be handled
    handled: str = ""                          # what happens instead, for handled cases
    check: Callable[[SimpleNamespace], bool] | None = None  # extra condition after the run
    logged: str = ""                           # a fragment of a warning that g2g must log


def _swap(image1: str, image2: str = "ok.png", model: str | None = None, **kw) -> Callable:
    def argv(e):
        m = e.model if model is None else str(e.models[model]) if model in e.models else str(e.root / model)
        i1 = str(e.images[image1]) if image1 in e.images else str(e.root / image1)
        return ["swap", i1, str(e.images[image2]), "--model", m, "--out", str(e.root / "swap" / kw.get("out", image1))]
    return argv


def _train(*extra: str, root: str | None = None) -> Callable:
    def argv(e):
        out = ["train", "--config", e.config, *[x.format(e=e) for x in extra]]
        return out + (["--trainer.default_root_dir", str(e.root / "runs" / root)] if root else [])
    return argv


def _outputs(name: str) -> Callable:
    return lambda e: all((e.root / "swap" / name / f"{k}.png").is_file() for k in ("m1", "m2", "r1", "r2", "panel"))


def _safe(e) -> bool:
    return not e.marker.exists()


IMAGE_ERRORS = [
    ("missing.png", "image path that does not exist", ("image file not found",)),
    ("images", "a folder instead of an image file", ("is a directory",)),
    ("empty.png", "empty file (0 bytes)", ("cannot read image", "give an image file")),
    ("notes.png", "text file named .png", ("cannot read image",)),
    ("random.jpg", "3000 random bytes named .jpg", ("cannot read image",)),
    ("truncated.png", "PNG cut in half", ("cannot read image", "truncated")),
    ("truncated.jpg", "JPEG cut in half", ("cannot read image", "truncated")),
    ("corrupt.png", "PNG with 40 zeroed bytes (CRC mismatch)", ("cannot read image",)),
    ("corrupt.jpg", "JPEG with 60 zeroed bytes in the scan data", ("cannot read image",)),
    ("header_only.png", "PNG signature and header only", ("cannot read image",)),
    ("bomb.png", "PNG header declaring 50000 × 50000 px (decompression bomb)", ("cannot read image", "exceeds limit")),
    ("sliver.png", "PNG header declaring 9 × 9,000,000 px (within PIL's limit; refused before decoding)",
     ("cannot read image", "9 × 9000000 px, more than 100 times as long as it is wide")),
]
IMAGE_HANDLED = [
    ("grey.png", "greyscale PNG (L)", "converted to RGB"),
    ("rgba.png", "RGBA PNG", "composited over white, then RGB"),
    ("palette.png", "palette PNG (P)", "converted to RGB"),
    ("palette_transparent.png", "palette PNG with a transparent colour", "composited over white"),
    ("bilevel.png", "1-bit PNG", "converted to RGB"),
    ("grey_alpha.png", "greyscale + alpha PNG (LA)", "composited over white"),
    ("grey16.png", "16-bit greyscale PNG", "rescaled 0–65535 → 0–255 (not clipped)"),
    ("rgb16.png", "16-bit-per-channel RGB PNG", "read as 8-bit RGB"),
    ("cmyk.jpg", "CMYK JPEG", "converted to RGB"),
    ("float.tif", "32-bit float TIFF in [0, 1]", "scaled to 0–255"),
    ("one_pixel.png", "1 × 1 image (smaller than the model's 16 px)", "resized up to 16 px"),
    ("strip.png", "200 × 3 strip", "short side resized to 16 px, centre cropped"),
    ("animated.gif", "animated GIF", "first frame used"),
    ("photo.webp", "WebP", "read"),
    ("photo.bmp", "BMP", "read"),
]

CASES = [
    *[Case(f"image-{n}", "image (swap, grid)", what, _swap(n), expect) for n, what, expect in IMAGE_ERRORS],
    *[Case(f"image-{n}", "image (swap, grid)", what, _swap(n), handled=how, check=_outputs(n))
      for n, what, how in IMAGE_HANDLED],
    Case("grid-one", "image (swap, grid)", "`g2g grid` with a single image",
         lambda e: ["grid", str(e.images["ok.png"]), "--model", e.model], ("grid needs two or more images",)),
    Case("grid-new-folder", "image (swap, grid)", "`g2g grid --out` in a folder that does not exist yet",
         lambda e: ["grid", str(e.images["ok.png"]), str(e.images["other.png"]), "--model", e.model,
                    "--out", str(e.root / "new" / "sub" / "grid.png")],
         handled="folders created", check=lambda e: (e.root / "new" / "sub" / "grid.png").is_file()),
    # model files (`--model`)
    Case("model-missing", "model file (--model)", "model path that does not exist",
         _swap("ok.png", model="nope.safetensors"),
         ("model file not found", "g2g export")),
    Case("model-empty-dir", "model file (--model)", "folder without model.safetensors",
         _swap("ok.png", model="empty_dir"),
         ("model file not found",)),
    Case("model-random", "model file (--model)", "5000 random bytes named .safetensors",
         _swap("ok.png", model="random.safetensors"), ("not a safetensors model file",)),
    Case("model-truncated", "model file (--model)", "safetensors model cut in half",
         _swap("ok.png", model="truncated.safetensors"), ("not a safetensors model file",)),
    Case("model-pt", "model file (--model)", "a torch.save state dict (.pt pickle)",
         _swap("ok.png", model="weights.pt"),
         ("not a safetensors model file",)),
    Case("model-evil", "model file (--model)", "a malicious pickle that would create a file when unpickled",
         _swap("ok.png", model="evil.pt"), ("not a safetensors model file",), check=_safe),
    Case("model-no-config", "model file (--model)", "safetensors weights without the G2G config",
         _swap("ok.png", model="no_config.safetensors"), ("no G2G generator config",)),
    Case("model-other-config", "model file (--model)", "config in the file does not match its weights (nf 8 vs 4)",
         _swap("ok.png", model="other_config.safetensors"), ("weights do not match its config",)),
    Case("model-bad-json", "model file (--model)", "config metadata that is not JSON",
         _swap("ok.png", model="bad_json.safetensors"), ("unusable G2G generator config",)),
    Case("model-ckpt", "model file (--model)", "a training checkpoint (.ckpt) instead of an exported model",
         _swap("ok.png", model="ckpt"), ("not a safetensors model file", "g2g export")),
    # command line
    Case("cli-no-command", "command line", "`g2g` with no command", lambda e: [], ("required: COMMAND",)),
    Case("cli-unknown-command", "command line", "unknown command `g2g trian`",
         lambda e: ["trian"], ("invalid choice",)),
    Case("cli-swap-no-model", "command line", "`g2g swap` without --model",
         lambda e: ["swap", str(e.images["ok.png"]), str(e.images["other.png"])], ("required: --model",)),
    Case("cli-swap-unknown-option", "command line", "unknown option `g2g swap --size 64`",
         lambda e: ["swap", str(e.images["ok.png"]), str(e.images["other.png"]), "--model", e.model, "--size", "64"],
         ("unrecognized arguments: --size 64",)),
    Case("cli-swap-out-file", "command line", "`g2g swap --out` names an existing file",
         lambda e: ["swap", str(e.images["ok.png"]), str(e.images["other.png"]), "--model", e.model,
                    "--out", str(e.root / "taken")], ("is a file; give a folder",)),
    # training options and config files
    Case("train-preset", "training options / config", "unknown preset `--preset gan`",
         lambda e: ["train", "--preset", "gan"], ("unknown preset 'gan'", "choose one of")),
    Case("train-preset-no-name", "training options / config", "`--preset` without a name",
         lambda e: ["train", "--preset"], ("--preset needs a name",)),
    Case("train-unknown-option", "training options / config", "unknown option `--model.loss.lambda_shortt 1`",
         _train("--model.loss.lambda_shortt", "1"), ("unrecognized arguments",)),
    Case("train-bad-type", "training options / config", "`--model.optim.lr_g fast` (not a number)",
         _train("--model.optim.lr_g", "fast"), ("model.optim.lr_g",)),
    Case("train-gan-loss", "training options / config", "unknown `--model.critic.gan_loss wgan`",
         _train("--model.critic.gan_loss", "wgan"), ("unknown gan_loss 'wgan'",)),
    Case("train-nan-policy", "training options / config", "unknown `--model.nan_policy ignore`",
         _train("--model.nan_policy", "ignore"), ("unknown nan_policy 'ignore'",)),
    Case("train-dataset", "training options / config", "unknown `--data.dataset imagenet`",
         _train("--data.dataset", "imagenet"), ("unknown dataset 'imagenet'",)),
    Case("train-config-missing", "training options / config", "`--config` file that does not exist",
         lambda e: ["train", "--config", str(e.root / "nope.yaml")], ("does not exist",)),
    Case("train-config-not-yaml", "training options / config", "`--config` file that is not YAML",
         lambda e: ["train", "--config", str(e.root / "not_yaml.yaml")], ("not_yaml.yaml is not valid YAML",)),
    Case("train-config-unknown-key", "training options / config", "config file with a misspelt key",
         lambda e: ["train", "--config", e.config, "--config", str(e.root / "unknown_key.yaml")], ("lambda_shortt",)),
    Case("train-negative-width", "training options / config", "`--model.generator.nf -3`",
         _train("--model.generator.nf", "-3"), ("nf=-3",)),
    Case("train-image-size", "training options / config",
         "`--data.image_size 18` (not divisible by 2**n_downs_content)",
         _train("--data.image_size", "18"), ("not divisible",)),
    Case("train-batch-zero", "training options / config", "`--data.batch_size 0`",
         _train("--data.batch_size", "0"), ("must be at least 1",)),
    Case("train-checkpoint-options", "training options / config", "two checkpoint intervals at once",
         _train("--checkpoint.every_n_train_steps", "2", "--checkpoint.every_n_epochs", "1"), ("mutually exclusive",)),
    # dataset folders
    Case("data-no-root", "dataset folder", "`--data.dataset folder` without a root",
         _train("--data.root", "null"), ("needs a root folder",)),
    Case("data-root-missing", "dataset folder", "dataset root that does not exist",
         _train("--data.root", "{e.root}/nowhere"), ("image folder not found",)),
    Case("data-root-file", "dataset folder", "dataset root that is a file",
         _train("--data.root", "{e.folders[file]}"), ("is a file",)),
    Case("data-empty", "dataset folder", "empty folder",
         _train("--data.root", "{e.folders[empty]}"), ("no images found",)),
    Case("data-flat-critic", "dataset folder", "images but no class sub-folders, with the class critic on",
         _train("--data.root", "{e.folders[flat]}"), ("at least 2 classes (got 1)", "model.loss.lambda_class: 0")),
    Case("data-flat", "dataset folder", "the same without the class critic (`--model.loss.lambda_class 0`)",
         _train("--data.root", "{e.folders[flat]}", "--model.loss.lambda_class", "0", root="flat"),
         handled="unlabelled folder: pairs drawn at random (class-supervised pairing needs labels); trains",
         check=lambda e: (e.root / "runs" / "flat" / "model.safetensors").is_file()),
    Case("data-one-class", "dataset folder", "a single class folder",
         _train("--data.root", "{e.folders[one_class]}"), ("at least 2 classes",)),
    Case("data-empty-class", "dataset folder", "a class folder without images",
         _train("--data.root", "{e.folders[empty_class]}"), ("hold no images",)),
    Case("data-mixed", "dataset folder", "loose images next to class folders",
         _train("--data.root", "{e.folders[mixed]}"), ("both images and sub-folders",)),
    Case("data-corrupt", "dataset folder", "a truncated PNG among the training images",
         _train("--data.root", "{e.folders[corrupt]}", "--data.batch_size", "4", root="corrupt"),
         ("cannot read image", "b.png", "skip_bad_images"),
         check=lambda e: not (e.root / "runs" / "corrupt" / "model.safetensors").exists()),
    Case("data-corrupt-skipped", "dataset folder", "the same with `--data.skip_bad_images true`",
         _train("--data.root", "{e.folders[corrupt]}", "--data.skip_bad_images", "true", root="skip"),
         handled="skipped and counted: `skipped 1 unreadable image(s) in …`; trains",
         logged="skipped 1 unreadable image(s)",
         check=lambda e: (e.root / "runs" / "skip" / "model.safetensors").is_file()),
    Case("data-small-odd", "dataset folder", "12 × 10 px images (model 16 px) and an odd `--data.batch_size 3`",
         _train("--data.batch_size", "3", root="small"),
         handled="images resized; a batch is 3 pairs (x1, x2), so any size ≥ 1 works; trains",
         check=lambda e: (e.root / "runs" / "small" / "model.safetensors").is_file()),
    # checkpoints: resume and export
    Case("resume-missing", "checkpoint (--ckpt_path, export)", "`--ckpt_path` that does not exist",
         _train("--ckpt_path", "{e.root}/nope.ckpt"), ("checkpoint not found",)),
    Case("resume-dir", "checkpoint (--ckpt_path, export)", "`--ckpt_path` names a folder",
         _train("--ckpt_path", "{e.ckpts[dir]}"), ("is a directory", "last.ckpt")),
    Case("resume-random", "checkpoint (--ckpt_path, export)", "checkpoint of 5000 random bytes",
         _train("--ckpt_path", "{e.ckpts[random.ckpt]}"), ("not a readable checkpoint",)),
    Case("resume-truncated", "checkpoint (--ckpt_path, export)", "checkpoint cut in half",
         _train("--ckpt_path", "{e.ckpts[truncated.ckpt]}"), ("not a readable checkpoint",)),
    Case("resume-evil", "checkpoint (--ckpt_path, export)", "a malicious pickle checkpoint (torch.save of an exploit)",
         _train("--ckpt_path", "{e.ckpts[evil.ckpt]}"), ("refused to unpickle",), check=_safe),
    Case("resume-model", "checkpoint (--ckpt_path, export)", "an exported .safetensors model as `--ckpt_path`",
         _train("--ckpt_path", "{e.ckpts[model]}"), ("not a G2G training checkpoint",)),
    Case("resume-other-generator", "checkpoint (--ckpt_path, export)",
         "config does not match the checkpoint (nf 8 vs 4)",
         _train("--ckpt_path", "{e.ckpts[good]}", "--model.generator.nf", "8"),
         ("trained with another generator", "nf: checkpoint 4, config 8")),
    Case("resume-other-data", "checkpoint (--ckpt_path, export)",
         "checkpoint of 30 classes resumed on a 2-class folder",
         _train("--ckpt_path", "{e.ckpts[good]}"), ("does not match the networks of this config", "class_critic")),
    Case("export-missing", "checkpoint (--ckpt_path, export)", "`g2g export` of a missing checkpoint",
         lambda e: ["export", str(e.root / "nope.ckpt"), "--out", str(e.root / "x.safetensors")],
         ("checkpoint not found",)),
    Case("export-random", "checkpoint (--ckpt_path, export)", "`g2g export` of random bytes",
         lambda e: ["export", str(e.ckpts["random.ckpt"]), "--out", str(e.root / "x.safetensors")],
         ("not a readable checkpoint",)),
    Case("export-evil", "checkpoint (--ckpt_path, export)", "`g2g export` of a malicious pickle",
         lambda e: ["export", str(e.ckpts["evil.ckpt"]), "--out", str(e.root / "x.safetensors")],
         ("refused to unpickle",), check=_safe),
    Case("export-plain", "checkpoint (--ckpt_path, export)",
         "`g2g export` of a torch.save dict that is not a G2G checkpoint",
         lambda e: ["export", str(e.ckpts["plain.ckpt"]), "--out", str(e.root / "x.safetensors")],
         ("not a G2G training checkpoint",)),
    Case("export-out-dir", "checkpoint (--ckpt_path, export)", "`g2g export --out` names an existing folder",
         lambda e: ["export", str(e.ckpts["good"]), "--out", str(e.root / "outdir")], ("is a directory",)),
    # evaluation
    Case("eval-no-root", "evaluation", "`g2g eval --data folder` without --root",
         lambda e: ["eval", e.model, "--data", "folder", "--out", str(e.root / "eval")], ("needs a root folder",)),
    Case("eval-root-missing", "evaluation", "`g2g eval --root` that does not exist",
         lambda e: ["eval", e.model, "--data", "folder", "--root", str(e.root / "nowhere")],
         ("image folder not found",)),
    Case("eval-model-missing", "evaluation", "`g2g eval` of a missing model",
         lambda e: ["eval", str(e.root / "nope.safetensors")], ("model file not found",)),
    # numerical faults
    Case("train-nan", "training (numerical)", "`--model.optim.lr_g 1e30`: the generator blows up, losses become NaN",
         _train("--model.optim.lr_g", "1e30", root="nan"), ("is nan at step 2", "nan_policy: skip"),
         check=lambda e: (e.root / "runs" / "nan" / "checkpoints" / "step1.ckpt").is_file()
         and not (e.root / "runs" / "nan" / "checkpoints" / "step2.ckpt").exists()),
]


def dataset_layout_cases() -> list[Case]:
    """Hook for datasets with their own layout. When `celeba` joins the datasets, a CelebA folder without
    its list files must be refused in one line; add further datasets (animals, …) here the same way."""
    cases = []
    if "celeba" in DATASETS:
        cases.append(Case("data-celeba-no-lists", "dataset folder",
                          "CelebA folder without list_eval_partition.txt / identity_CelebA.txt",
                          _train("--data.dataset", "celeba", "--data.root", "{e.folders[celeba_no_lists]}"),
                          ("list_eval_partition",)))
    return cases


CASES += dataset_layout_cases()


# --- running a case ------------------------------------------------------------------------------


@dataclass
class Outcome:
    rc: int             # exit status
    err: str            # what was printed on stderr
    logged: list[str]   # messages g2g logged at WARNING or above


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_case(case: Case, material: SimpleNamespace) -> Outcome:
    """Run one case through `g2g.cli.main`, with stdout discarded, stderr and g2g's warnings collected and
    Python warnings ignored."""
    logger, collect, err = logging.getLogger("g2g"), _Collect(), io.StringIO()
    logger.addHandler(collect)
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rc = main(case.argv(material))
            except SystemExit as e:  # argparse exits (status 2) after printing its one line
                rc = e.code
    finally:
        logger.removeHandler(collect)
    return Outcome(rc, err.getvalue(), collect.messages)


class CaseFailed(AssertionError):
    """A case did not end the way it must."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise CaseFailed(what)


def check(case: Case, material: SimpleNamespace, out: Outcome) -> str:
    """Raise CaseFailed unless the outcome is what the case requires; returns what the user gets: the
    error line, or "handled: ..." (the table's last column, temporary folders not yet replaced)."""
    _require("Traceback" not in out.err, f"{case.id}: traceback\n{out.err}")
    errors = [line for line in out.err.splitlines() if re.match(r"g2g( \w+)?: error: ", line)]
    if case.expect:
        _require(out.rc == 2, f"{case.id}: exit status {out.rc}, not 2\n{out.err}")
        _require(len(errors) == 1 and out.err.rstrip().endswith(errors[0]),
                 f"{case.id}: not one error line at the end\n{out.err}")
        for fragment in case.expect:
            _require(fragment in errors[0], f"{case.id}: {fragment!r} not in {errors[0]!r}")
        message = errors[0]
    else:
        _require(out.rc == 0 and not errors, f"{case.id}: exit status {out.rc}\n{out.err}")
        message = f"handled: {case.handled}"
    if case.logged:
        _require(any(case.logged in m for m in out.logged), f"{case.id}: {case.logged!r} not logged: {out.logged}")
    if case.check is not None:
        _require(case.check(material), f"{case.id}: check failed")
    return message


def tmp_free(text: str, material: SimpleNamespace, *folders: Path) -> str:
    """text with the material's folder (and any other given folders) written as `…`."""
    for folder in (material.root, *folders):
        text = text.replace(str(folder), "…")
    return text
