"""docs/results.md from the records of benchmarks/quality.py: the answer to its question, the tables,
the metric-vs-time plots and the class × content grids. Nothing in the doc is typed by hand: its numbers
come from the records, its prose from templates/results*.md."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from doc_template import block, render
from g2g.evaluation.intervals import seed_ci
from quality import COLUMNS, CURVES, EVIDENCE, QUESTION, WITH_LONG, WITHOUT_LONG, slug

DECIMALS = {key: (scale, decimals) for key, _, scale, decimals in COLUMNS}


def values(runs: list[dict], dataset: str, variant: str, key: str) -> list[float]:
    """One number per finished run (seed) of a variant on a dataset."""
    return [r["metrics"][key] for r in runs if "error" not in r and r["dataset"] == dataset
            and r["variant"] == variant and key in r["metrics"]]


def interval(v: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the 95 % Student-t interval over seeds (None with fewer than 2)."""
    mean = float(np.mean(v))
    if len(v) < 2:
        return mean, None
    low, high = seed_ci(v)
    return mean, (high - low) / 2


def cell(v: list[float], key: str) -> str:
    """`mean ± half-width` in the column's unit; `–` without runs."""
    if not v:
        return "–"
    scale, decimals = DECIMALS[key]
    mean, half = interval(v)
    return f"{scale * mean:.{decimals}f}" + ("" if half is None else f" ± {scale * half:.{decimals}f}")


def compare(a: list[float], b: list[float], better: str) -> str | None:
    """'better', 'worse' or 'overlap': a against b by their 95 % intervals over seeds, where `better`
    ('higher' | 'lower') says which way is better; None when either has fewer than 2 seeds."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, ha), (mb, hb) = interval(a), interval(b)
    if ma - ha <= mb + hb and mb - hb <= ma + ha:
        return "overlap"
    return "better" if (ma > mb) == (better == "higher") else "worse"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def answer(runs: list[dict], budget_s: int) -> tuple[str, str]:
    """(verdict, one sentence) on QUESTION from WITH_LONG against WITHOUT_LONG, computed from the table: the
    verdict is 'helps' or 'hurts' where 95 % intervals separate (all one way), 'mixed' where they
    separate both ways, 'no measurable difference at this budget' where they all overlap, and
    'undetermined' without 2 seeds of each."""
    found: dict[str, list[str]] = {"better": [], "worse": [], "overlap": []}
    seeds = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for key, words, better, unit in EVIDENCE:
            a, b = values(runs, dataset, WITH_LONG, key), values(runs, dataset, WITHOUT_LONG, key)
            verdict = compare(a, b, better)
            if verdict is not None:
                found[verdict].append(f"{words} on {dataset} ({cell(a, key)} vs {cell(b, key)}{unit})")
                seeds.append(min(len(a), len(b)))
    if not seeds:
        return "undetermined", (f"Not answered by these results: that needs `{WITH_LONG}` and `{WITHOUT_LONG}` runs "
                                "with at least 2 seeds each.")
    at = f"at this budget ({budget_s} s of training per run)"
    over = f"non-overlapping 95 % intervals over {min(seeds)}+ seeds" if min(seeds) < max(seeds) else \
        f"non-overlapping 95 % intervals over {min(seeds)} seeds"
    yes, no = f"`{WITH_LONG}` (with the long reconstruction)", f"`{WITHOUT_LONG}` (without it)"
    rest = f", and no measurable difference on {_join(found['overlap'])}" if found["overlap"] else ""
    if found["better"] and found["worse"]:
        return "mixed", (f"Mixed {at}: {yes} is better than {no} on "
                         f"{_join(found['better'])} but worse on {_join(found['worse'])} ({over}){rest}.")
    if found["better"] or found["worse"]:
        verdict, which = ("helps", "better") if found["better"] else ("hurts", "worse")
        return verdict, (f"It {verdict} {at}: {yes} is {which} than {no} "
                         f"on {_join(found[which])}, with {over}{rest}.")
    return "no measurable difference at this budget", (
        f"No measurable difference {at}: the 95 % intervals over {min(seeds)} seeds of {yes} and {no} overlap "
        f"on {_join(found['overlap'])}.")


def _mean(runs: list[dict], dataset: str, key: str) -> float | None:
    v = [r["metrics"][key] for r in runs if "error" not in r and r["dataset"] == dataset and key in r["metrics"]]
    return float(np.mean(v)) if v else None


def reference(runs: list[dict], dataset: str, key: str) -> str:
    """The reference level of a column (mean over the dataset's runs: each seed has its own test set)."""
    tag = "_heldout" if key.endswith("_heldout") else ""
    if key.startswith("swap_psnr"):
        flat, copy = _mean(runs, dataset, f"flat_psnr{tag}"), _mean(runs, dataset, f"copy_psnr{tag}")
        return f"flat {flat:.2f}, copy {copy:.2f}"
    chance = {"class_transfer": f"class_chance{tag}", "probe": "probe_chance"}.get(key.removesuffix("_heldout"))
    if chance is not None:
        return f"chance {100 * _mean(runs, dataset, chance):.1f}"
    return {"dci": "ideal 1", "ratio": "lossless 1"}.get(key, "")


def table(runs: list[dict], dataset: str, variants: list[str]) -> list[str]:
    columns = [c for c in COLUMNS if any(values(runs, dataset, v, c[0]) for v in variants)]
    lines = ["| variant | " + " | ".join(c[1] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for v in variants:
        lines.append(f"| `{v}` | " + " | ".join(cell(values(runs, dataset, v, c[0]), c[0]) for c in columns) + " |")
    lines.append("| reference | " + " | ".join(reference(runs, dataset, c[0]) for c in columns) + " |")
    return lines


def plot_curves(runs: list[dict], dataset: str, variants: list[str], out: Path) -> Path:
    """Curve metrics vs seconds of training: each seed thin, the mean over seeds thick."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in runs if "error" not in r and r["dataset"] == dataset]
    keys = [k for k in CURVES if any(k in p for r in ok for p in r["curve"])]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, key in zip(axes[0], keys, strict=True):
        scale = 100 if key == "class_transfer" else 1
        for colour, variant in zip(colours, variants, strict=False):  # 10 colours
            mine = [r["curve"] for r in ok if r["variant"] == variant]
            if not mine:
                continue
            for curve in mine:
                ax.plot([p["seconds"] for p in curve], [scale * p[key] for p in curve], color=colour, alpha=0.3, lw=0.8)
            n = min(len(c) for c in mine)  # points of a run: start, every budget/points s, end
            t = np.mean([[p["seconds"] for p in c[:n]] for c in mine], axis=0)
            y = np.mean([[scale * p[key] for p in c[:n]] for c in mine], axis=0)
            ax.plot(t, y, color=colour, lw=2, marker="o", ms=3, label=variant)
        levels = {"flat image": "flat_psnr", "copy x1": "copy_psnr"} if key == "swap_psnr" else \
            {"chance": "class_chance"}
        for label, level in levels.items():
            ax.axhline(scale * _mean(runs, dataset, level), color="grey", ls="--", lw=1)
            ax.annotate(label, (0.01, scale * _mean(runs, dataset, level)), xycoords=("axes fraction", "data"),
                        fontsize=7, color="grey", va="bottom")
        ax.set_xlabel("training time (s)")
        ax.set_ylabel(CURVES[key])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: mean over seeds (thick), each seed (thin)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _machine(results: dict) -> str:
    runs = [r for r in results["runs"] if "error" not in r]
    kinds = sorted({f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} thread(s) a run, "
                    f"code {m.get('code', '?')}" for m in (r["machine"] for r in runs)})
    loads = [x for r in runs for x in (r["load_1min_start"], r["load_1min_end"])]
    load_range = f"; within runs {min(loads):.2f}–{max(loads):.2f}" if loads else ""
    return (f"Machine: {'; '.join(kinds) or 'no finished run'}; {results['jobs']} run(s) in parallel. Load average "
            f"(1 min) {results['load_1min_start']:.2f} at the start, {results['load_1min_end']:.2f} at the end"
            f"{load_range} (on {runs[0]['machine']['cores'] if runs else '?'} cores: above that, processes waited "
            f"for a core).")


def head(results: dict, variants: list[str]) -> str:
    """The doc down to the per-dataset sections: the answer, the machine, the variants and how it was measured."""
    runs, budget = results["runs"], results["budget_s"]
    done = [r for r in runs if "error" not in r]
    seconds = {key: f"{np.mean([r[key] for r in done if key in r] or [np.nan]):.0f}" for key in
               ("train_seconds", "eval_seconds", "wall_seconds")}
    table = results["variant_table"]
    rows = [f"| `{v}` | {table[v]['change']} | {' '.join(table[v]['overrides']) or '–'} |" for v in variants]
    e = results["eval"]
    return render("results.md", command=results["command"], started=results["started"],
                  finished=results["finished"], results_json=Path(results["out_dir"]) / "results.json",
                  question=QUESTION, answer=answer(runs, budget)[1], machine=_machine(results), budget=budget,
                  **seconds, variant_rows=block(rows), seeds=results["seeds"],
                  overrides=" ".join(results["overrides"]) or "none", n_pairs=e["n_pairs"], n_probe=e["n_probe"],
                  dci_repeats=e["dci_repeats"])


def dataset_section(results: dict, dataset: str, variants: list[str], docs_dir: Path, runs_root: Path) -> list[str]:
    """A dataset's table, its metric-vs-time figure and its class × content grids (figures written to docs_dir)."""
    runs = results["runs"]
    done = [r for r in runs if "error" not in r and r["dataset"] == dataset]
    lines = ["", f"## {dataset}", "", *table(runs, dataset, variants), ""]
    if done:
        curve = plot_curves(runs, dataset, variants, docs_dir / f"results_curve_{dataset}.png")
        lines += [render("results_curve.md", pairs=results["curve_pairs"], dataset=dataset, figure=curve.name), ""]
    grids = []
    for v in variants:
        run = next((r for r in done if r["variant"] == v and r.get("grid")), None)
        if run is not None and (runs_root / run["grid"]).is_file():
            name = f"results_grid_{dataset}_{slug(v)}.png"
            shutil.copyfile(runs_root / run["grid"], docs_dir / name)
            grids.append(f"`{v}`<br>![{dataset} {v}]({name})")
    if grids:
        lines += [render("results_grids.md"), ""]
        for k in range(0, len(grids), 3):
            row = grids[k:k + 3]
            lines += ["| " + " | ".join(row) + " |"] + (["|---" * len(row) + "|"] if k == 0 else [])
    return lines


def write_docs(results: dict, docs_dir: Path, runs_root: Path) -> Path:
    """docs_dir/results.md, results_curve_<dataset>.png and results_grid_<dataset>_<variant>.png from
    the results of `quality.py` (grids copied from the run folders under runs_root); the prose comes from
    templates/results*.md."""
    runs = results["runs"]
    datasets = [d for d in results["datasets"] if any(r["dataset"] == d for r in runs)]
    variants = [v for v in results["variants"] if any(r["variant"] == v for r in runs)]
    lines = [head(results, variants)]
    failed = [r for r in runs if "error" in r]
    if failed:
        lines += ["", render("results_failed.md", runs="; ".join(
            f"{r['dataset']} {r['variant']} seed {r['seed']}: {r['error']}" for r in failed))]
    docs_dir.mkdir(parents=True, exist_ok=True)
    for old in docs_dir.glob("results_*.png"):  # figures of an earlier doc (other variants or datasets)
        old.unlink()
    for d in datasets:
        lines += dataset_section(results, d, variants, docs_dir, runs_root)
    out = docs_dir / "results.md"
    out.write_text("\n".join(lines) + "\n")
    return out
