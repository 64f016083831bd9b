"""The bundled models (src/g2g/models/) and docs/models.md: train each model with `g2g train`, evaluate it
with `g2g eval` on its dataset, and copy the exported model and its metrics into the package.

    python benchmarks/make_models.py                     # every model (`make models`): the preset's 8.5 min each
    python benchmarks/make_models.py --only digits       # one model
    python benchmarks/make_models.py --from-run outputs/demo --only shapes --command "g2g demo --out outputs/demo"
                                                         # a trained run and its `g2g eval` folder, no training

NAME.metrics.json is the `g2g eval` report (metrics.json) with a "bundle" record added: the training and
evaluation commands, steps, seconds, date and torch version. Training runs and evaluations stay in --work.
Every file is renamed into place: an interrupted run never leaves half a model in the package.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from doc_template import block, render

from g2g.checkpoint import load_checkpoint
from g2g.evaluation.report import CLASSIFIER_STEPS, run_eval
from g2g.files import atomic_write
from g2g.inference import load
from g2g.models import MODELS_DIR, bundled_info, bundled_names, info_rows

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "models.md"

# name → (preset, built-in dataset): the models that the built-in data allow
MODELS = {"shapes": ("g2g", "shapes"), "digits": ("g2g", "digits")}


def train_args(preset: str, dataset: str, root: Path, budget_s: int | None, max_steps: int | None) -> list[str]:
    """`g2g train` arguments (after `train`); the preset's time budget unless budget_s or max_steps."""
    args = ["train", "--preset", preset, "--data.dataset", dataset, "--trainer.default_root_dir", str(root)]
    if budget_s is not None:
        minutes, seconds = divmod(budget_s, 60)
        args += ["--trainer.max_time", f"00:{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}"]
    if max_steps is not None:
        args += ["--trainer.max_steps", str(max_steps)]
    return args


def newest_model(run: Path) -> Path:
    """run/model.safetensors, else the newest model.safetensors under run (a `g2g train` folder)."""
    if (run / "model.safetensors").is_file():
        return run / "model.safetensors"
    found = sorted(run.rglob("model.safetensors"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no model.safetensors in {run}: give a `g2g train` or `g2g demo` output folder")
    return found[-1]


def run_record(run: Path) -> dict[str, Any]:
    """Generator steps and training seconds of a run, from its newest last.ckpt (None where absent)."""
    ckpts = sorted(run.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        return {"steps": None, "train_seconds": None}
    ckpt = load_checkpoint(ckpts[-1])
    elapsed = ckpt.get("callbacks", {}).get("Timer", {}).get("time_elapsed", {}).get("train")
    return {"steps": ckpt.get("global_step"), "train_seconds": None if elapsed is None else round(elapsed, 1)}


def train(name: str, work: Path, budget_s: int | None, max_steps: int | None) -> tuple[Path, dict[str, Any]]:
    """Train one model with `g2g train` in its own process; (exported model, record)."""
    preset, dataset = MODELS[name]
    root = work / name / "train"
    if root.exists():
        shutil.rmtree(root)  # a fresh run: the newest model under it is this run's
    args = train_args(preset, dataset, root, budget_s, max_steps)
    print(f"[{name}] g2g {shlex.join(args)}", flush=True)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "g2g.cli", *args], check=True)
    wall = round(time.monotonic() - start, 1)
    record = {"preset": preset, "train_command": f"g2g {shlex.join(args)}", "wall_seconds": wall}
    return newest_model(root), {**record, **run_record(root)}


def evaluate(name: str, model: Path, dataset: str, out: Path, pairs: int, classifier_steps: int) -> dict:
    """`g2g eval` of the exported model on its dataset (metrics.json in out), with its command."""
    command = (f"g2g eval {shlex.quote(str(model))} --data {dataset} --out {shlex.quote(str(out))} "
               f"--pairs {pairs} --classifier-steps {classifier_steps}")
    print(f"[{name}] {command}", flush=True)
    report = run_eval(model, data=dataset, out_dir=out, n_pairs=pairs, classifier_steps=classifier_steps)
    return {**report, "eval_command": command}


def _publish(path: Path, write) -> None:
    """atomic_write, readable by everyone (package data: the temporary file it renames is private)."""
    def write_readable(tmp: str) -> None:
        write(tmp)
        os.chmod(tmp, 0o644)
    atomic_write(path, write_readable)


def bundle(name: str, model: Path, metrics: dict, record: dict, models_dir: Path) -> Path:
    """Copy the model, its config and its metrics (with the bundle record) into models_dir as NAME.*."""
    config = json.dumps(load(model).config.to_dict(), indent=2) + "\n"  # a model that does not load is never bundled
    eval_command = metrics.pop("eval_command", None)
    metrics.pop("markdown", None)  # the numbers are all in the JSON; the Markdown is in the eval folder
    metrics["bundle"] = {"name": name, "dataset": metrics.get("data"), "image_size": metrics.get("image_size"),
                         **record, "eval_command": eval_command, "source": str(model),
                         "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
                         "torch": torch.__version__}
    target = models_dir / f"{name}.safetensors"
    _publish(target, lambda tmp: shutil.copyfile(model, tmp))
    _publish(target.with_suffix(".json"), lambda tmp: Path(tmp).write_text(config))
    text = json.dumps(metrics, indent=2) + "\n"
    _publish(models_dir / f"{name}.metrics.json", lambda tmp: Path(tmp).write_text(text))
    print(f"[{name}] bundled {target} (+ .json, .metrics.json)", flush=True)
    return target


def from_run(run: Path, eval_dir: Path | None, name: str | None, preset: str | None,
             command: str | None) -> tuple[str, Path, dict, dict]:
    """(name, model, metrics, record) of an already-trained run and its `g2g eval` folder (default: the run
    folder, as `g2g demo` writes it). The name defaults to the evaluated dataset."""
    model = newest_model(run)
    metrics_file = (eval_dir or run) / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"no metrics.json in {metrics_file.parent}: run `g2g eval {model} --data DATASET "
                                f"--out DIR` and give --eval DIR")
    metrics = json.loads(metrics_file.read_text())
    configs = sorted(run.rglob("config.yaml"), key=lambda p: p.stat().st_mtime)
    if command is None and configs:
        command = f"g2g train --config {configs[-1]}"  # the run's whole configuration, as LightningCLI saved it
    settings = metrics.get("settings", {})
    eval_command = (f"g2g eval {model} --data {metrics.get('data')} --pairs {settings.get('n_pairs')} "
                    f"--classifier-steps {settings.get('classifier_steps')}")
    record = {"preset": preset, "train_command": command, "wall_seconds": None, **run_record(run)}
    return name or str(metrics.get("data")), model, {**metrics, "eval_command": eval_command}, record


def _trained(bundle: dict) -> str:
    steps, seconds = bundle.get("steps"), bundle.get("train_seconds")
    duration = "" if seconds is None else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    parts = ([f"{steps} steps"] if steps is not None else []) + ([duration] if duration else [])
    return ", ".join(parts) or "—"


def write_docs(models_dir: Path, out: Path) -> Path:
    """docs/models.md: one row per evaluated split of each bundled model, and how each was made."""
    rows, commands = [], []
    for name in bundled_names(models_dir):
        info = bundled_info(name, models_dir)
        b = info["bundle"]
        for k, row in enumerate(info_rows(info)):
            rows.append("| " + " | ".join([f"`{row[0]}`" if row[0] else "", *row[1:],
                                           _trained(b) if k == 0 else ""]) + " |")
        commands.append(f"- `{name}`: `{b.get('train_command') or '—'}`; evaluated with "
                        f"`{b.get('eval_command') or '—'}`; bundled {b.get('date', '—')} "
                        f"with torch {b.get('torch', '—')}")
    text = render("models.md", rows=block(rows), commands=block(commands))
    atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help=f"one model: {', '.join(MODELS)} (with --from-run: any name)")
    p.add_argument("--budget", type=int, default=None, metavar="SECONDS",
                   help="training time per model (default: the preset's budget)")
    p.add_argument("--max-steps", type=int, default=None, help="stop training after this many steps")
    p.add_argument("--pairs", type=int, default=2000, help="`g2g eval` test pairs (default: %(default)s)")
    p.add_argument("--classifier-steps", type=int, default=CLASSIFIER_STEPS,
                   help="`g2g eval` classifier training steps (default: %(default)s)")
    p.add_argument("--work", type=Path, default=Path("outputs/models"),
                   help="training runs and evaluations (default: %(default)s)")
    p.add_argument("--from-run", type=Path, default=None, metavar="DIR",
                   help="bundle this trained run (`g2g train` / `g2g demo` output) instead of training")
    p.add_argument("--eval", type=Path, default=None, metavar="DIR",
                   help="with --from-run: the folder of its `g2g eval` metrics.json (default: the run folder)")
    p.add_argument("--preset", default=None, help="with --from-run: the preset it was trained with (recorded)")
    p.add_argument("--command", default=None, help="with --from-run: how it was trained (recorded)")
    p.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where the models go (default: the package)")
    p.add_argument("--docs", type=Path, default=DOCS, help="the table to regenerate (default: docs/models.md)")
    args = p.parse_args(argv)
    if args.from_run is None and args.only is not None and args.only not in MODELS:
        p.error(f"unknown model {args.only!r}: choose one of {', '.join(MODELS)}")
    if args.only is not None and not args.only.replace("-", "").replace("_", "").isalnum():
        p.error(f"a model name is letters, digits, '-' and '_', not {args.only!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.from_run is not None:
        name, model, metrics, record = from_run(args.from_run, args.eval, args.only, args.preset, args.command)
        bundle(name, model, metrics, record, args.models_dir)
    for name in ([] if args.from_run is not None else [args.only] if args.only else list(MODELS)):
        model, record = train(name, args.work, args.budget, args.max_steps)
        metrics = evaluate(name, model, MODELS[name][1], args.work / name / "eval", args.pairs, args.classifier_steps)
        bundle(name, model, metrics, record, args.models_dir)
    print(f"wrote {write_docs(args.models_dir, args.docs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
