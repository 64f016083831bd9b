"""ONNX export of a model: its content encoder, class encoder and decoder, and the whole swap, as ONNX
graphs with a dynamic batch axis, described by `onnx.json` beside them.

    content_encoder.onnx   image (B, C, H, W) → content (B, *content code shape)
    class_encoder.onnx     image (B, C, H, W) → class_code (B, D); K references: the mean of their codes
    decoder.onnx           content, class_code → image (B, C, H, W)
    swap.onnx              x1, x2 → m1, m2, r1, r2 (as `G2GModel.swap`)

Images are float32 RGB, NCHW, in [-1, 1], at the model's image size (onnx.json says how to resize).

Arch sprite's inference-time pose fit (`n_fit` > 0) is not exported: its Gauss–Newton step solves a
linear system per image (`torch.linalg.solve`), which torch's ONNX exporter has no translation for. The
graphs then give the encoder's pose, the pose that training uses, and onnx.json records
`"pose_fit": "not exported"`; `G2GModel` with `n_fit: 0` computes what the graphs compute. Refusing the
export instead would leave the bundled `shapes` model, which fits poses, without ONNX graphs.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .files import atomic_write
from .inference import G2GModel
from .networks.generator import Generator, config_from_dict

OPSET = 18
DESCRIPTION = "onnx.json"
GRAPHS = ("content_encoder", "class_encoder", "decoder", "swap")


class _Graph(nn.Module):
    """One function of a generator, fn(generator, *inputs), as the module that torch.onnx exports."""

    def __init__(self, gen: Generator, fn: Callable[..., Any]):
        super().__init__()
        self.gen, self.fn = gen, fn

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.fn(self.gen, *inputs)


def _swap(gen: Generator, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """m1, m2, r1, r2 of `wiring.g2g_forward` (mixing, reassembly, long reconstruction), with slices where it
    splits: torch.export cannot prove that split(B) of 2B rows gives two parts for every B, and would fix B."""
    b = x1.shape[0]
    x = torch.cat([x1, x2])
    codes = gen.encode_class(x)                                                   # (2B, D)
    mixed = gen.decode(gen.encode_content(x, codes), torch.cat([codes[b:], codes[:b]]))   # [m1, m2]
    codes_m = gen.encode_class(mixed)
    long = gen.decode(gen.encode_content(mixed, codes_m), torch.cat([codes_m[b:], codes_m[:b]]))  # [r1, r2]
    return mixed[:b], mixed[b:], long[:b], long[b:]


def exportable(gen: Generator) -> Generator:
    """A copy of `gen` on the CPU in eval mode, without arch sprite's pose fit (see the module docstring)."""
    plain = copy.deepcopy(gen).cpu().float().eval()
    if gen.config.pose_fit_steps:
        plain.config = config_from_dict({**gen.config.to_dict(), "n_fit": 0})
    return plain


def _batch_shape(t: torch.Tensor) -> list[int | str]:
    return ["batch", *t.shape[1:]]


def export_graph(gen: Generator, name: str, fn: Callable[..., Any], inputs: dict[str, torch.Tensor],
                  outputs: list[str], path: Path) -> dict[str, Any]:
    """Export fn(gen, *inputs) to `path` with a dynamic batch axis on every input and output; returns its
    entry of onnx.json (file, input and output shapes)."""
    module = _Graph(gen, fn).eval()
    args = tuple(inputs.values())
    with torch.no_grad():
        results = module(*args)
    results = results if isinstance(results, tuple) else (results,)
    batch = torch.export.Dim("batch", min=1)
    dynamic = (tuple({0: batch} for _ in args),)  # forward(*inputs): one tuple of inputs

    def write(tmp: str) -> None:
        # torch.export first, on its own: given the program, torch.onnx cannot quietly fix the batch size
        program = torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter prints its progress
            # inputs that share the batch axis: the exporter names it once and says so
            warnings.filterwarnings("ignore", message="# The axis name")
            # optimize=False: onnxscript's graph optimizer turned sqrt(s + 1e-8) (arch sprite's edge view) into
            # sqrt(s), 4e-4 off the model on flat regions; onnxruntime optimises a graph itself when it loads it
            torch.onnx.export(program, (), tmp, external_data=False, opset_version=OPSET, optimize=False,
                              input_names=list(inputs), output_names=outputs, dynamic_shapes=dynamic)
    try:
        atomic_write(path, write)
    except (RuntimeError, NotImplementedError) as e:  # torch.onnx.errors.OnnxExporterError is a RuntimeError
        raise ValueError(f"the {name} of arch {gen.config.arch!r} cannot be exported to ONNX ({_reason(e)})") from None
    return {"file": path.name, "inputs": {k: _batch_shape(v) for k, v in inputs.items()},
            "outputs": {k: _batch_shape(v) for k, v in zip(outputs, results)}}


def _reason(e: BaseException) -> str:
    """The cause of an export failure on one line: the exporter's own summary of it when there is one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # no terminal colours
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    if text.startswith("Constraints violated"):
        return "its code fixes the batch size, so the batch axis cannot be dynamic (torch.export: constraints violated)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return re.sub(r"^<class '[\w.]+'>: ", "", " ".join(lines[0].split())) if lines else type(e).__name__


def _require(*packages: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'g2g[onnx]'")


def export_onnx(model: G2GModel | Generator, out_dir: str | Path) -> dict[str, Any]:
    """Write the graphs of GRAPHS and their description (onnx.json) to `out_dir`; returns the description."""
    _require("onnx", "onnxscript")
    source = model.generator if isinstance(model, G2GModel) else model
    gen, config = exportable(source), source.config
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder for the ONNX graphs")
    out.mkdir(parents=True, exist_ok=True)
    size = config.image_size
    # example inputs: two images (a batch of one would fix the batch axis at 1)
    x = torch.rand(2, config.channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        class_code = gen.encode_class(x)
        content = gen.encode_content(x)
    graphs: dict[str, tuple[Callable[..., Any], dict[str, torch.Tensor], list[str]]] = {
        "content_encoder": (Generator.encode_content, {"image": x}, ["content"]),
        "class_encoder": (Generator.encode_class, {"image": x}, ["class_code"]),
        "decoder": (Generator.decode, {"content": content, "class_code": class_code}, ["image"]),
        "swap": (_swap, {"x1": x, "x2": x.flip(0)}, ["m1", "m2", "r1", "r2"]),
    }
    entries = {name: export_graph(gen, name, fn, inputs, outputs, out / f"{name}.onnx")
               for name, (fn, inputs, outputs) in graphs.items()}
    description = {
        "arch": config.arch,
        "image_size": size,
        "channels": config.channels,
        "layout": "NCHW, float32, RGB",
        "value_range": [-1.0, 1.0],
        "resize": ("shorter side to image_size, then a centre crop" if config.crops
                   else "both sides to image_size"),
        "opset": OPSET,
        "pose_fit": "not exported" if config.pose_fit_steps else "none",
        "class_references": "the class code of K references is the mean of their class codes",
        "graphs": entries,
        "config": config.to_dict(),
    }
    atomic_write(out / DESCRIPTION, lambda tmp: Path(tmp).write_text(json.dumps(description, indent=2) + "\n"))
    return description
