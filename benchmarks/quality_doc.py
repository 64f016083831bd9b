"""docs/results.md from the records of benchmarks/quality.py: the answer to its question, the tables,
the metric-vs-time plots and the class × content grids. Nothing in the doc is typed by hand."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

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
    for ax, key in zip(axes[0], keys):
        scale = 100 if key == "class_transfer" else 1
        for colour, variant in zip(colours, variants):
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


def write_docs(results: dict, docs_dir: Path, runs_root: Path) -> Path:
    """docs_dir/results.md, results_curve_<dataset>.png and results_grid_<dataset>_<variant>.png from
    the results of `quality.py` (grids copied from the run folders under runs_root)."""
    runs, budget = results["runs"], results["budget_s"]
    datasets = [d for d in results["datasets"] if any(r["dataset"] == d for r in runs)]
    variants = [v for v in results["variants"] if any(r["variant"] == v for r in runs)]
    done = [r for r in runs if "error" not in r]
    _, sentence = answer(runs, budget)
    seconds = {key: np.mean([r[key] for r in done if key in r] or [np.nan]) for key in
               ("train_seconds", "eval_seconds", "wall_seconds")}
    e = results["eval"]
    lines = [
        "# Results: the g2g preset and its ablations",
        "",
        f"Generated by `{results['command']}` ({results['started']} to {results['finished']}); do not edit by",
        "hand. The same doc from the saved results, without training: `python benchmarks/quality.py --from-json "
        f"{Path(results['out_dir']) / 'results.json'}`.",
        "",
        f"**{QUESTION}** {sentence}",
        "",
        _machine(results),
        "",
        f"Budget: {budget} s of training per run (`trainer.max_time`, counted from the start of the training loop; "
        "start-up, data and evaluation come on top). On average a run trained for "
        f"{seconds['train_seconds']:.0f} s, evaluated for {seconds['eval_seconds']:.0f} s and took "
        f"{seconds['wall_seconds']:.0f} s in all.",
        "",
        "| variant | what differs from the preset | `g2g train` options |",
        "|---|---|---|",
        *[f"| `{v}` | {results['variant_table'][v]['change']} | "
          f"{' '.join(results['variant_table'][v]['overrides']) or '–'} |" for v in variants],
        "",
        "How the numbers were measured:",
        "",
        f"- Each cell: mean ± half-width of the 95 % Student-t interval over {results['seeds']} seed(s). Seed s sets "
        "seed_everything, model.seed and data.seed (initialisation, content noise, pair order, the shapes training "
        "set or the digits split); each run is evaluated on its seed's test split. Extra `g2g train` options for "
        f"every run: {' '.join(results['overrides']) or 'none'}.",
        f"- `g2g eval` of the final EMA generator, lightened: {e['n_pairs']} test pairs of different classes, linear "
        f"probes on {e['n_probe']} codes, no MLP probes, {e['dci_repeats']} DCI fit(s), no LPIPS or FID. One "
        "independent classifier per dataset and seed judges every variant.",
        "- swap PSNR: m1 = G(a1, b2) against the true render (shapes); reference: each target's mean colour spread "
        "flat, and copying the content source x1.",
        "- class transfer: the share of m1 that the classifier gives x2's class; reference: chance (1 / classes).",
        "- class from content: held-out accuracy of a linear probe on content codes (goal: chance, the most common "
        "class's share).",
        "- DCI disentanglement of the class and content code blocks (shapes; 1 is ideal).",
        "- double-swap / short L1: the long reconstruction's L1 error over the short one's on the same images "
        "(1: the two swaps lose nothing more).",
        "- short rec. PSNR: short reconstruction; steps: generator steps trained within the budget.",
        "- Shapes: the 25 seen classes, or the 5 held-out ones (never trained on) where marked.",
    ]
    failed = [r for r in runs if "error" in r]
    if failed:
        lines += ["", "Failed runs (left out of the table): " +
                  "; ".join(f"{r['dataset']} {r['variant']} seed {r['seed']}: {r['error']}" for r in failed) + "."]
    docs_dir.mkdir(parents=True, exist_ok=True)
    for old in docs_dir.glob("results_*.png"):  # figures of an earlier doc (other variants or datasets)
        old.unlink()
    for d in datasets:
        lines += ["", f"## {d}", "", *table(runs, d, variants), ""]
        if any(r["dataset"] == d for r in done):
            curve = plot_curves(runs, d, variants, docs_dir / f"results_curve_{d}.png")
            lines += [f"Metric vs training time: swap PSNR and class transfer on {results['curve_pairs']} fixed "
                      "test pairs, of the EMA "
                      "generator exported during training; dashed: the reference levels.", "",
                      f"![{d}: metric vs training time]({curve.name})", ""]
        grids = []
        for v in variants:
            run = next((r for r in done if r["dataset"] == d and r["variant"] == v and r.get("grid")), None)
            if run is not None and (runs_root / run["grid"]).is_file():
                name = f"results_grid_{d}_{slug(v)}.png"
                shutil.copyfile(runs_root / run["grid"], docs_dir / name)
                grids.append(f"`{v}`<br>![{d} {v}]({name})")
        if grids:
            lines += ["Class × content grids (seed 0; row i: the class of test image i, column j: the content of "
                      "test image j; first row and column: the real images):", ""]
            for k in range(0, len(grids), 3):
                row = grids[k:k + 3]
                lines += ["| " + " | ".join(row) + " |"] + (["|---" * len(row) + "|"] if k == 0 else [])
    out = docs_dir / "results.md"
    out.write_text("\n".join(lines) + "\n")
    return out
