"""Training presets: one YAML file per preset in this folder, read by `g2g train --preset NAME`.

A preset is either a complete file or an overlay: a few keys laid over another preset (`OVERLAYS`),
composed the way LightningCLI composes stacked `--config` files (later files win, nested keys merge)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESETS_DIR = Path(__file__).resolve().parent  # also reachable as ./configs in a checkout

# overlay → the preset it is laid over
OVERLAYS = {
    "cyclefunit-id": "cyclefunit",
    "cyclefunit-idloss": "cyclefunit",
}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_files(name: str) -> list[Path]:
    """The YAML files of a preset, base first (as stacked `--config` files)."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(preset_names())}")
    return [*preset_files(OVERLAYS[name]), path] if name in OVERLAYS else [path]


def preset_args(name: str) -> list[str]:
    """`g2g train` arguments that load a preset: `--config FILE` for each of its files."""
    return [arg for path in preset_files(name) for arg in ("--config", str(path))]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: nested dicts merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_preset(name: str) -> dict[str, Any]:
    """A preset's composed configuration as a plain dict."""
    config: dict[str, Any] = {}
    for path in preset_files(name):
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return config
