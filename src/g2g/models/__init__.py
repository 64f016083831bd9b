"""Bundled models: small models trained on the built-in data and shipped with the package, so that
`g2g.load("shapes")` and `g2g swap A.png B.png --model shapes` work without training.

Each model NAME is three files in this folder: NAME.safetensors (weights, config in its metadata),
NAME.json (the same config, for people) and NAME.metrics.json (what `g2g eval` measured when it was
bundled, with a "bundle" record of how it was made). `benchmarks/make_models.py` (`make models`)
rebuilds them; `g2g models` lists them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent
COLUMNS = ("model", "data", "size", "arch", "split", "swap PSNR", "class transfer (chance)",
           "class from content code (chance)")
MISSING = "—"


def _folder(folder: str | Path | None) -> Path:
    return MODELS_DIR if folder is None else Path(folder)


def bundled_names(folder: str | Path | None = None) -> list[str]:
    """Names of the bundled models (files NAME.safetensors), sorted."""
    return sorted(p.stem for p in _folder(folder).glob("*.safetensors"))


def bundled_path(name: str, folder: str | Path | None = None) -> Path:
    """The weight file of a bundled model; a ValueError naming the choices for an unknown name."""
    names = bundled_names(folder)
    if name not in names:
        choices = f"choose one of {', '.join(names)}" if names else "none is installed (`make models` builds them)"
        raise ValueError(f"unknown bundled model {name!r}: {choices}; or give the path of a model file")
    return _folder(folder) / f"{name}.safetensors"


def bundled_metrics(name: str, folder: str | Path | None = None) -> dict[str, Any]:
    """NAME.metrics.json: the `g2g eval` report of the model plus its "bundle" record ({} when absent)."""
    path = bundled_path(name, folder).with_name(f"{name}.metrics.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def _headline(split: dict[str, Any]) -> dict[str, float | None]:
    """Swap PSNR against the true render (datasets that have one), class transfer and the linear probe of
    the class from the content code, each with its chance level."""
    def get(*keys: str) -> float | None:
        value: Any = split
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, (int, float)) else None
    return {"swap_psnr": get("swap", "psnr"),
            "class_transfer": get("class_transfer", "accuracy"), "class_chance": get("class_transfer", "chance"),
            "probe": get("class_from_content_probe", "accuracy"),
            "probe_chance": get("class_from_content_probe", "chance")}


def bundled_info(name: str, folder: str | Path | None = None) -> dict[str, Any]:
    """What `g2g models` shows of one model: data, image size, arch, the headline metrics of each
    evaluated split ({split: {"swap_psnr", "class_transfer", "class_chance", "probe", "probe_chance"}},
    None where not measured) and the bundle record."""
    path = bundled_path(name, folder)
    metrics = bundled_metrics(name, folder)
    config_file = path.with_suffix(".json")
    config = metrics.get("generator") or (json.loads(config_file.read_text()) if config_file.is_file() else {})
    bundle = metrics.get("bundle", {})
    splits = {key: _headline(value) for key, value in metrics.items()
              if isinstance(value, dict) and "n_images" in value}  # the evaluated splits of the report
    return {"name": name, "path": path, "data": metrics.get("data", bundle.get("dataset")),
            "image_size": metrics.get("image_size", config.get("image_size")), "arch": config.get("arch"),
            "splits": splits, "bundle": bundle}


def _percent(value: float | None, chance: float | None) -> str:
    if value is None:
        return MISSING
    return f"{100 * value:.1f} %" + (f" ({100 * chance:.1f} %)" if chance is not None else "")


def headline_cells(h: dict[str, float | None]) -> list[str]:
    """The headline metrics of one split as text: swap PSNR, class transfer, probe ("—": not measured)."""
    psnr = h.get("swap_psnr")
    return [MISSING if psnr is None else f"{psnr:.2f} dB", _percent(h.get("class_transfer"), h.get("class_chance")),
            _percent(h.get("probe"), h.get("probe_chance"))]


def _text(value: Any, unit: str = "") -> str:
    return MISSING if value is None else f"{value}{unit}"


def info_rows(info: dict[str, Any]) -> list[list[str]]:
    """One row per evaluated split (model, data, size and arch on the first), cells as in COLUMNS."""
    model = [info["name"], _text(info["data"]), _text(info["image_size"], " px"), _text(info["arch"])]
    splits = info["splits"] or {MISSING: {}}
    return [[*(model if k == 0 else [""] * len(model)), split, *headline_cells(h)]
            for k, (split, h) in enumerate(splits.items())]


def listing(folder: str | Path | None = None) -> str:
    """The table `g2g models` prints: each model's data, size, arch and headline `g2g eval` metrics."""
    names = bundled_names(folder)
    if not names:
        return f"no bundled models in {_folder(folder)} (`make models` builds them)"
    rows = [list(COLUMNS)] + [row for name in names for row in info_rows(bundled_info(name, folder))]
    widths = [max(len(row[c]) for row in rows) for c in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"measured by `g2g eval` when bundled; files: {_folder(folder)}/NAME.safetensors "
                 f"(`--model NAME` or g2g.load(\"NAME\"))")
    return "\n".join(lines)
