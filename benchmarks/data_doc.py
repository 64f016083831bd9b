"""The "Data at scale" section of docs/performance.md, from benchmarks/results/data/: scale.json (written
by data_scale.py) and loader.jsonl (`g2g bench --data DIR --out benchmarks/results/data/loader.jsonl`)."""
from __future__ import annotations

import json
from pathlib import Path

from doc_template import block, render


def _index_row(r: dict) -> str:
    return f"| {r['dataset']} | {r['files']:,} | {r['cold_s']:.2f} s | {r['cached_s']:.2f} s |"


def _loader_row(r: dict) -> str:
    rates = " / ".join(f"{w['pairs_per_s']:,.0f}" for w in r["loader"])
    best = max(r["loader"], key=lambda w: w["pairs_per_s"])
    one = next((w for w in r["loader"] if w["workers"] == 1), None)
    distinct = 2 if not r["supervised"] else 2 + 2 * r["k_refs"]  # files decoded per pair
    per_core = f"{one['pairs_per_s'] * distinct:,.0f} files/s (1 worker, {distinct} files a pair)" if one else "—"
    return (f"| {r['preset']} | {r['dataset']}, {r['train_images']:,} images | {rates} | "
            f"{best['images_per_s']:,.0f} ({best['workers']} workers) | {per_core} |")


def _projection(runs: list[dict], step_images_per_s: float = 535.0, cores: int = 16) -> str:
    """What `cores` cores would deliver at the measured one-worker rate, against the GPU step's need."""
    lines = []
    for r in runs:
        one = next((w for w in r["loader"] if w["workers"] == 1), None)
        if one is None:
            continue
        need = step_images_per_s / 2  # pairs/s: the step counts 2 images a pair
        projected = (cores - 1) * one["pairs_per_s"]
        lines.append(f"{r['preset']} on {r['dataset']}: one worker delivers {one['pairs_per_s']:,.0f} pairs/s; "
                     f"{cores - 1} workers at that rate would deliver about {projected:,.0f} pairs/s "
                     f"against the {need:,.1f} pairs/s ({step_images_per_s:.0f} images/s) of the `cyclefunit` "
                     f"128-px step on an H200, {projected / need:,.0f} times its need")
    if not lines:
        return ""
    return ("Projected to a 16-core GPU machine (per-core rate of this CPU; one core left to the training "
            "process): " + "; ".join(lines) + ". At that step rate an epoch of CelebA's 162,770 training images "
            f"(81,385 pairs) takes {162_770 / step_images_per_s / 60:.1f} minutes, and the loader would keep up.")


def _eval_row(r: dict, name: str) -> str:
    end = " (killed: out of memory)" if r.get("killed") else ""
    return (f"| {name} | {r['test_images']:,} | {r['peak_rss_gb']:.2f} GB{end} | "
            f"{r['peak_rss_with_workers_gb']:.2f} GB | {r['wall_s'] / 60:.1f} min |")


def data_section(folder: Path) -> str | None:
    """The section's Markdown, or None when nothing was measured."""
    scale_file, loader_file = folder / "scale.json", folder / "loader.jsonl"
    if not scale_file.exists():
        return None
    scale = json.loads(scale_file.read_text())
    loaders = [json.loads(line) for line in loader_file.read_text().splitlines() if line.strip()] \
        if loader_file.exists() else []
    e = scale["eval"]
    eval_rows = [_eval_row(e, "streaming (this version)")]
    note = ""
    for o in scale.get("eval_old", []):
        eval_rows.append(_eval_row(o, "whole splits in memory (previous version)"))
    if len(scale.get("eval_old", [])) >= 2:  # the growth per test image, from the two smallest runs
        a, b = sorted(scale["eval_old"], key=lambda o: o["test_images"])[:2]
        slope = (b["peak_rss_gb"] - a["peak_rss_gb"]) / (b["test_images"] - a["test_images"])
        full = a["peak_rss_gb"] + slope * (e["test_images"] - a["test_images"])
        note = (f"The previous version held whole splits and encoded them 500 images at a time: its peak grew by "
                f"{slope * 1e3:.0f} MB per test image, which puts the full test split ({e['test_images']:,} images) "
                f"near {full:,.0f} GB.\n")
    machine = (loaders[0]["machine"] if loaders else {}).get("cpu", "this machine")
    settings = (f"{e['pairs']} pairs, {e['probe_images']} probe images, {e['classifier_steps']} classifier steps; "
                "memory does not depend on these counts beyond the per-item numbers kept")
    return render("performance_data.md", machine=f"{machine} (2 cores)", index_rows=block(
        [_index_row(r) for r in scale["index"]]), loader_batches=loaders[0]["loader"][0]["batches"] if loaders else 0,
        loader_rows=block([_loader_row(r) for r in loaders]), projection=_projection(loaders),
        eval_settings=settings, eval_rows=block(eval_rows), eval_note=note)
