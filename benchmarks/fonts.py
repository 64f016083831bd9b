"""The fonts benchmark: each report approach and the general preset trained on a folder of fonts for the same
CPU time budget, scored on true swaps among the training fonts and among held-out fonts; docs/fonts.md
generated from the results.

    python benchmarks/fonts.py --jobs 2 --write-docs        # 5 methods × 3 seeds, 1800 s each, the doc
    python benchmarks/fonts.py --from-json outputs/fonts/results.json --write-docs   # the doc, without training
    python benchmarks/fonts.py --methods naive --seeds 0 --budget 60 -- --data.batch_size 8
    python benchmarks/fonts.py --out-dir outputs/fonts --rescore --write-docs   # trained models, new evaluation
    python benchmarks/fonts.py --methods general --doc-name fonts-general --write-docs   # a page of its own

Each method is a preset plus `g2g train` options (METHODS), all at --size px on the fonts under --root
(`--data.dataset fonts`), for --budget seconds of training (trainer.max_time; the presets' step and epoch
limits are lifted). Each run is its own process (this file with --run, OMP_NUM_THREADS = --threads). The
judges of a seed (`evaluation.fonts.fit_font_judges`) are fitted once, in a process of their own (--judge),
with the baselines scored on that seed's pairs; every run of that seed is judged by them. After training,
the exported EMA generator is scored by `font_swap_scores` on --pairs pairs per split and checked for
collapse (`collapse.diagnose` on held-out fonts). Runs land in --out-dir/<method>/seed<S>/ (run.json,
log.txt, train/, snapshots/); a run whose run.json has the same settings is reused. All records go to
--out-dir/results.json.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from g2g.configs import load_preset, preset_args, preset_files  # noqa: E402
from g2g.evaluation.fonts import SPLITS  # noqa: E402
from quality import docs_or_benchmark, BenchmarkError, slug, stray_arguments, train_staged  # noqa: E402

FONTS_ROOT = "/usr/share/fonts/truetype/aenigma"
DEFAULT_METHODS = ["general", "general-no-long", "naive", "cyclefunit", "funit2funit"]
K_SHOTS = (1, 8)
BASELINES = ("copy x1", "mean glyph", "retrieval 1-shot", "retrieval 8-shot")
REFERENCE = "true render"  # the answer itself: what the judges read of real glyphs, their ceiling
# a method: the preset it trains, `g2g train` options laid over it, what they change in words; no_long:
# every loss weight that needs the long reconstruction is set to 0 as well (read from the preset at run time)
METHODS: dict[str, dict] = {
    "general": {"preset": "general", "overrides": [], "change": "the preset as it is"},
    "general-no-long": {"preset": "general", "overrides": [], "no_long": True,
                        "change": "the general preset without the long reconstruction: every loss weight that "
                                  "needs the long pass set to 0"},
    "naive": {"preset": "naive", "overrides": [], "change": "the preset as it is"},
    "cyclefunit": {"preset": "cyclefunit",
                   "overrides": ["--model.loss.lambda_identity", "0", "--model.frozen.perceptual", "none"],
                   "change": "no identity loss and reconstructions compared as pixels (L1) instead of VGG16 "
                             "features: nothing that needs downloaded weights"},
    "funit2funit": {"preset": "funit2funit", "overrides": ["--model.init_from", "null"],
                    "change": "from scratch (no FUNIT checkpoint); the projection discriminator keeps its 10 "
                              "residual blocks, whose last score map is 2 × 2 at 32 px"},
}
# every run: the fonts (in memory: no workers), training ended by the budget alone; --data.image_size, given
# per run, also sets model.generator.image_size (training.G2GCLI)
FONT_OPTIONS = ["--data.dataset", "fonts", "--data.num_workers", "0", "--trainer.max_steps", "-1",
                "--trainer.max_epochs", "-1"]
# a method "copies x1" from this copy-through on: a blurred glyph, as near x1 as the answer, scores about 50 %
COPIES = 0.9
GRID_CHARS = "AaBbGgKkQqRy"  # the columns of the doc's grid picture
DOC_NAME = "fonts"  # docs/fonts.md, docs/fonts_swaps.png, docs/fonts_grid.png
COLUMNS = [("psnr", "PSNR dB", 1, 2), ("ssim", "SSIM", 1, 3), ("character_kept", "character kept %", 100, 1),
           ("character_kept_readable", "character kept, readable answers %", 100, 1),
           ("font_transferred", "font transferred %", 100, 1), ("copy_through", "copy-through %", 100, 1)]


# ---- methods ----

def long_weights(preset: str) -> dict[str, float]:
    """The preset's loss weights > 0 that need the long reconstruction (tag "long" in hparams.LossWeights),
    its own values or the defaults it leaves in place."""
    from g2g.hparams import LossWeights
    loss = load_preset(preset).get("model", {}).get("loss", {}) or {}
    out = {}
    for f in fields(LossWeights):
        value = loss.get(f.name, f.default)
        if "long" in f.metadata.get("needs", ()) and value > 0:
            out[f.name] = value
    return out


def method_overrides(name: str) -> list[str]:
    """A method's `g2g train` options on top of its preset."""
    method = METHODS[name]
    out = list(method["overrides"])
    if method.get("no_long"):
        out += [arg for w in long_weights(method["preset"]) for arg in (f"--model.loss.{w}", "0")]
    return out


def method_table(names: list[str]) -> dict:
    """What each method trains (saved with the results: the doc is written from them)."""
    return {m: {"preset": METHODS[m]["preset"], "change": METHODS[m]["change"], "overrides": method_overrides(m)}
            for m in names}


def code_digest(presets: list[str]) -> str:
    """sha256 (16 hex digits) of the presets' files and the package's source."""
    h = hashlib.sha256()
    files = [p for name in sorted(set(presets)) for p in preset_files(name)]
    for path in [*files, *sorted((ROOT / "src" / "g2g").rglob("*.py"))]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


# ---- processes and reuse (also used by validation.py) ----

def spawn(script: str, argv: list[str], threads: int, log: Path) -> tuple[int, float]:
    """Run a benchmark script with argv in a process of its own with `threads` threads; (status, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, script, *argv], env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return rc, round(time.monotonic() - start, 1)


def reusable(path: Path, settings: dict, older: bool = False) -> dict | None:
    """The record at path when it was made with these settings; with older, also when it was made with
    another version of the code (its record keeps the code digest it was trained with)."""
    old = json.loads(path.read_text()) if path.is_file() else None
    if old is None or "settings" not in old:
        return None
    same = old["settings"] == settings or (older and {**old["settings"], "code": None} == {**settings, "code": None})
    return old if same else None


def older_words(runs: list[dict], codes: dict[str, str], key: str) -> str:
    """A sentence on runs reused from another version of the code (--reuse-older); runs[i][key] names the
    method or preset whose current code digest codes holds."""
    older = [r for r in runs if "settings" in r and r[key] in codes and r["settings"]["code"] != codes[r[key]]]
    if not older:
        return ""
    names = ", ".join(dict.fromkeys(r[key] for r in older))
    return (f"\n{len(older)} of the {_runs(len(runs))} ({names}) were trained with another version of the code and "
            "reused (`--reuse-older`): the same settings otherwise; each run's record holds the code digest it was "
            "trained with (settings).\n")


def seed_options(seed: int) -> list[str]:
    return ["--seed_everything", str(seed), "--model.seed", str(seed), "--data.seed", str(seed)]


# ---- judges and runs (each in its own process) ----

def judge_path(args, seed: int) -> Path:
    root = hashlib.sha256(str(Path(args.root).resolve()).encode()).hexdigest()[:8]
    return args.out_dir / "judges" / f"{root}-{args.size}px-seed{seed}-{args.judge_steps}steps-{args.pairs}pairs.pt"


def datasets(args, seed: int):
    from g2g.data.fonts import FontsDataset
    return tuple(FontsDataset(args.root, split, args.size, seed) for split in ("train", "test"))


def fit_judges(args, seed: int) -> None:
    """The seed's judges (state dicts, .pt) and, beside them (.json), the baselines on its pairs and the census."""
    from g2g.data.fonts import census_line
    from g2g.evaluation.fonts import fit_font_judges, font_swap_scores
    train_ds, test_ds = datasets(args, seed)
    judges = fit_font_judges(train_ds, test_ds, seed, args.judge_steps, device="cpu")
    path = judge_path(args, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"character": judges.character.state_dict(),
                "fonts": {k: v.state_dict() for k, v in judges.fonts.items()},
                "pair_chars": judges.pair_chars, "accuracy": judges.accuracy, "steps": judges.steps}, path)
    scores = font_swap_scores(None, train_ds, test_ds, args.pairs, seed, K_SHOTS, judges, baselines=True)
    info = {"census": census_line(train_ds.census), "fonts": [train_ds.num_classes, test_ds.num_classes],
            "scores": scores}
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))


def load_judges(path: Path):
    from g2g.evaluation.fonts import FontJudges
    from g2g.evaluation.metrics import Classifier
    if not path.is_file():
        raise FileNotFoundError(f"no font judges at {path}: the judge phase did not fit them")
    saved = torch.load(path, weights_only=True)

    def net(state: dict) -> torch.nn.Module:
        n = Classifier(state["head.weight"].shape[0], width=state["features.0.weight"].shape[0])
        n.load_state_dict(state)
        return n.eval()
    return FontJudges(net(saved["character"]), {k: net(v) for k, v in saved["fonts"].items()}, saved["pair_chars"],
                      saved["accuracy"], saved["steps"])


def score(model_file: Path, seed: int, args) -> dict:
    """The exported model's scores, collapse check and scoring time (the fields of a record they fill)."""
    from g2g.evaluation.fonts import font_swap_scores
    from g2g.evaluation.report import collapse_check
    from g2g.inference import load
    start = time.monotonic()
    model = load(model_file)
    train_ds, test_ds = datasets(args, seed)
    scores = font_swap_scores(model, train_ds, test_ds, args.pairs, seed, K_SHOTS,
                              load_judges(judge_path(args, seed)), baselines=False)
    collapse = collapse_check(model, test_ds, seed)
    return {"eval_seconds": round(time.monotonic() - start, 1), "scores": scores,
            "collapse": {"collapsed": collapse["collapsed"], "verdict": collapse["verdict"]}}


def run_one(method: str, seed: int, args) -> dict:
    """Train, score and check one run; writes and returns its record (run.json)."""
    torch.set_num_threads(args.threads)
    here = args.out_dir / slug(method) / f"seed{seed}"
    points = train_staged([*preset_args(METHODS[method]["preset"]), *FONT_OPTIONS, "--data.root", str(args.root),
                           "--data.image_size", str(args.size), *seed_options(seed), *method_overrides(method),
                           *args.overrides], here, args.budget)
    model_file = here / "snapshots" / points[-1]["file"]
    record = {"method": method, "seed": seed, "settings": run_settings(args, method), "steps": points[-1]["step"],
              "train_seconds": points[-1]["seconds"], "model": str(model_file), **score(model_file, seed, args)}
    (here / "run.json").write_text(json.dumps(record, indent=1))
    return record


def rescore_one(method: str, seed: int, args) -> dict:
    """Score a finished run's model again with this checkout's evaluation; its training record (settings,
    steps, seconds) is kept and the record marked `rescored` with this checkout's code digest."""
    torch.set_num_threads(args.threads)
    path = args.out_dir / slug(method) / f"seed{seed}" / "run.json"
    record = json.loads(path.read_text())
    record.update(score(Path(record["model"]), seed, args))
    record["rescored"] = {"code": code_digest([METHODS[method]["preset"]]),
                          "at": datetime.datetime.now().isoformat(timespec="seconds")}
    path.write_text(json.dumps(record, indent=1))
    return record


def rescorable(path: Path, method: str, seed: int) -> None:
    """A finished run whose model can be scored again (--rescore), or a one-line error."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    if "model" not in record or not Path(record["model"]).is_file():
        raise BenchmarkError(f"--rescore: {method} seed {seed} has no finished run with its model in {path.parent}; "
                             "train it first (the same command without --rescore)")


def run_settings(args, method: str) -> dict:
    """What a run's numbers depend on besides method and seed: a run is reused only when equal."""
    return {"code": code_digest([METHODS[method]["preset"]]), "root": str(Path(args.root).resolve()),
            "size": args.size, "budget_s": args.budget, "threads": args.threads, "pairs": args.pairs,
            "judge_steps": args.judge_steps, "overrides": [*method_overrides(method), *args.overrides]}


# ---- the benchmark ----

def child_args(args) -> list[str]:
    return ["--root", str(args.root), "--size", str(args.size), "--budget", str(args.budget), "--threads",
            str(args.threads), "--pairs", str(args.pairs), "--judge-steps", str(args.judge_steps),
            "--out-dir", str(args.out_dir), "--", *args.overrides]


def run_benchmark(args) -> dict:
    """Fit the missing judges, then train the runs whose records are missing or stale; write results.json."""
    now = lambda: datetime.datetime.now().isoformat(timespec="seconds")  # noqa: E731
    started = now()
    table = method_table(args.methods)  # fails at once on a preset that does not exist
    judges = [s for s in args.seeds if not judge_path(args, s).with_suffix(".json").is_file()]
    records, todo = {}, []
    for m in args.methods:
        for s in args.seeds:
            path = args.out_dir / slug(m) / f"seed{s}" / "run.json"
            if args.rescore:
                rescorable(path, m, s)
                todo.append((m, s))
            elif (old := reusable(path, run_settings(args, m), m in args.reuse_older)) is not None:
                records[(m, s)] = old
            else:
                todo.append((m, s))
    print(f"{len(judges)} judge sets to fit, {len(todo)} runs to do, {len(records)} reused; {args.jobs} at a time",
          flush=True)

    def judge(s):
        log = judge_path(args, s).with_suffix(".log")
        if spawn(__file__, ["--judge", str(s), *child_args(args)], args.threads, log)[0]:
            raise BenchmarkError(f"fitting the font judges of seed {s} failed: see {log}")

    def run(task):
        m, s = task
        here = args.out_dir / slug(m) / f"seed{s}"
        kind, log = ("--rescore-run", here / "rescore.txt") if args.rescore else ("--run", here / "log.txt")
        rc, wall = spawn(__file__, [kind, m, str(s), *child_args(args)], args.threads, log)
        record = ({"method": m, "seed": s, "error": f"exit status {rc}; see {log}"} if rc else
                  {**json.loads((here / "run.json").read_text()),
                   **({} if args.rescore else {"wall_seconds": wall})})
        print(f"{m} seed {s}: {record.get('error') or _brief(record)}", flush=True)
        return task, record

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(judge, judges))
        records.update(pool.map(run, todo))
    seeds = {str(s): json.loads(judge_path(args, s).with_suffix(".json").read_text()) for s in args.seeds}
    results = {"started": started, "finished": now(), "command": "python benchmarks/fonts.py " + shlex.join(args.argv),
               "root": str(args.root), "size": args.size, "budget_s": args.budget, "threads": args.threads,
               "jobs": args.jobs, "pairs": args.pairs, "judge_steps": args.judge_steps, "seeds": args.seeds,
               "overrides": args.overrides, "methods": args.methods, "method_table": table, "judges": seeds,
               "out_dir": str(args.out_dir), "doc_name": args.doc_name or DOC_NAME,
               "codes": {m: run_settings(args, m)["code"] for m in args.methods},
               "runs": [records[(m, s)] for m in args.methods for s in args.seeds]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


def _brief(r: dict) -> str:
    row = r["scores"]["held-out fonts"].get("rows", {}).get("model 8-shot")
    held = "" if row is None else (f", held-out 8-shot PSNR {row['psnr']:.2f} dB, font transferred "
                                   f"{100 * row['font_transferred']:.0f} %")
    return f"{r['steps']} steps in {r['train_seconds']:.0f} s{held}; {r['collapse']['verdict']}"


# ---- the doc (its numbers from the records, its prose from templates/fonts.md) ----

def _mean(v: list[float]) -> float:
    return sum(v) / len(v) if v else math.nan


def cell(v: list[float], scale: float, decimals: int) -> str:
    """`mean ± half-width of the 95 % Student-t interval over seeds`; with two seeds, whose interval says
    little (t = 12.7), `mean (seed values)`; `–` without values."""
    from quality_doc import interval
    if not v:
        return "–"
    if len(v) == 2:
        return f"{scale * _mean(v):.{decimals}f} ({scale * v[0]:.{decimals}f}, {scale * v[1]:.{decimals}f})"
    mean, half = interval(v)
    return f"{scale * mean:.{decimals}f}" + ("" if half is None else f" ± {scale * half:.{decimals}f}")


def split_rows(results: dict, split: str) -> dict[str, dict[str, list[float]]]:
    """Row label → metric → one value per seed: each method's K-shot rows, then the baselines."""
    rows: dict[str, dict[str, list[float]]] = {}
    for method in results["methods"]:
        for k in K_SHOTS:
            for r in results["runs"]:
                found = r.get("scores", {}).get(split, {}).get("rows", {}).get(f"model {k}-shot")
                if r["method"] == method and "error" not in r and found is not None:
                    for key, *_ in COLUMNS:  # results from before a column existed leave it empty
                        got = rows.setdefault(f"{method} {k}-shot", {}).setdefault(key, [])
                        if key in found:
                            got.append(found[key])
    for seed in results["seeds"]:
        base = results["judges"][str(seed)]["scores"][split].get("rows", {})
        for b in (b for b in (*BASELINES, REFERENCE) if b in base):
            for key, *_ in COLUMNS:
                got = rows.setdefault(b, {}).setdefault(key, [])
                if key in base[b]:
                    got.append(base[b][key])
    return rows


def targets(row: dict[str, float], base: dict[str, dict[str, float]]) -> tuple[list[str], list[str]]:
    """The floor's and the goal's unmet conditions for a method's 8-shot seed means (base: the baselines')."""
    floor, goal, retrieval = [], [], base["retrieval 8-shot"]
    for key, name, d in (("psnr", "PSNR", 2), ("ssim", "SSIM", 3)):
        best = max(base, key=lambda b: base[b][key])
        if row[key] <= base[best][key]:
            floor.append(f"{name} {row[key]:.{d}f} ≤ {best} {base[best][key]:.{d}f}")
    # among the pairs whose true render the character judge reads (results without that column: all pairs)
    kept, what = row.get("character_kept_readable", math.nan), "character kept (readable answers)"
    if math.isnan(kept):
        kept, what = row["character_kept"], "character kept"
    if kept < 0.95:
        floor.append(f"{what} {100 * kept:.1f} % < 95 %")
    if row["font_transferred"] <= retrieval["font_transferred"]:
        floor.append(f"font transferred {100 * row['font_transferred']:.1f} % ≤ retrieval 8-shot "
                     f"{100 * retrieval['font_transferred']:.1f} %")
    if row["copy_through"] > 0.05:
        floor.append(f"copy-through {100 * row['copy_through']:.1f} % > 5 %")
    if row["psnr"] < retrieval["psnr"] + 2:
        goal.append(f"PSNR {row['psnr']:.2f} < retrieval 8-shot + 2 = {retrieval['psnr'] + 2:.2f} dB")
    if row["font_transferred"] < 0.5:
        goal.append(f"font transferred {100 * row['font_transferred']:.1f} % < 50 %")
    return floor, goal


def split_table(results: dict, split: str) -> tuple[str, dict[str, tuple[list[str], list[str]]]]:
    """The Markdown table of one split and each method's unmet (floor, goal) conditions."""
    rows = split_rows(results, split)
    means = {label: {k: _mean(v) for k, v in m.items()} for label, m in rows.items()}
    base = {b: means[b] for b in BASELINES if b in means}
    head = "| | " + " | ".join(h for _, h, *_ in COLUMNS) + " | steps | floor | goal |"
    lines = [head, "|---" * (len(COLUMNS) + 4) + "|"]
    checks = {}
    for label, metrics in rows.items():
        method, _, shots = label.rpartition(" ")
        steps = [r["steps"] for r in results["runs"] if r.get("method") == method and "error" not in r]
        floor = goal = "–"
        if shots == f"{max(K_SHOTS)}-shot" and method in results["methods"] and len(base) == len(BASELINES):
            checks[method] = targets(means[label], base)
            floor, goal = ("met" if not c else "**not met**: " + "; ".join(c) for c in checks[method])
        numbers = " | ".join(cell(metrics[key], scale, d) for key, _, scale, d in COLUMNS)
        step_cell = cell([float(s) for s in steps], 1, 0) if method in results["methods"] else "–"
        lines.append(f"| {label} | {numbers} | {step_cell} | {floor} | {goal} |")
    return "\n".join(lines) + "\n", checks


def paired_gap(results: dict, method: str, baseline: str = "retrieval 8-shot") -> str:
    """PSNR minus the baseline's on the same held-out pairs, seed by seed: the seeds' splits differ in
    difficulty for every method alike, so the pairs' differences are tighter than either mean."""
    gaps = []
    for r in results["runs"]:
        mine = r.get("scores", {}).get(SPLITS[1], {}).get("rows", {}).get(f"model {max(K_SHOTS)}-shot")
        if r.get("method") == method and "error" not in r and mine is not None:
            base = results["judges"][str(r["seed"])]["scores"][SPLITS[1]]["rows"][baseline]
            gaps.append(f"{mine['psnr'] - base['psnr']:+.2f}")
    return f"; the difference on the same pairs, seed by seed: {', '.join(gaps)} dB" if gaps else ""


def sentence(results: dict, method: str) -> str:
    """What a method does on held-out fonts with 8-shot class codes, in one sentence from its numbers."""
    rows = split_rows(results, SPLITS[1])
    mine = rows.get(f"{method} {max(K_SHOTS)}-shot")
    runs = [r for r in results["runs"] if r.get("method") == method]
    failed = [r for r in runs if "error" in r]
    if mine is None:
        return f"- **{method}**: no finished run ({len(failed)} failed)."
    m = {k: _mean(v) for k, v in mine.items()}
    base = {b: {k: _mean(v) for k, v in rows[b].items()} for b in BASELINES if b in rows}
    beaten = [b for b in base if m["psnr"] > base[b]["psnr"]]
    lost = [b for b in base if b not in beaten]
    ret = base["retrieval 8-shot"]
    versus = f"retrieval 8-shot {ret['psnr']:.2f} dB{paired_gap(results, method)}"
    psnr = (f"beats every baseline on PSNR ({m['psnr']:.2f} dB, {versus})" if not lost
            else f"PSNR {m['psnr']:.2f} dB, below {', '.join(lost)} ({versus})")
    copies = f"; copies x1 (copy-through {100 * m['copy_through']:.0f} %)" if m["copy_through"] >= COPIES else ""
    collapsed = [r for r in runs if r.get("collapse", {}).get("collapsed")]
    verdict = (f"collapses in {len(collapsed)} of {_runs(len(runs))} ({collapse_words(collapsed[0])})"
               if collapsed else f"no collapse in {_runs(len(runs) - len(failed))}")
    return (f"- **{method}** (held-out fonts, 8-shot): {psnr}; keeps the character in "
            f"{100 * m['character_kept']:.0f} %{redrawn(runs)} and transfers the font in "
            f"{100 * m['font_transferred']:.0f} % (retrieval 8-shot {100 * ret['font_transferred']:.0f} %){copies}; "
            f"{verdict}.")


def redrawn(runs: list[dict]) -> str:
    """How often the method's models keep the character when they draw x1 back from its own codes (the
    reference for its swaps), where the records have it."""
    kept = [r["scores"][SPLITS[1]]["redrawn"]["character_kept"] for r in runs
            if "redrawn" in r.get("scores", {}).get(SPLITS[1], {})]
    return f" (redrawn from its own codes, {100 * _mean(kept):.0f} %)" if kept else ""


def doc_name(results: dict) -> str:
    """The doc's file name without .md, also the prefix of its pictures (results from before the option: fonts)."""
    return results.get("doc_name", DOC_NAME)


def other_pages(results: dict, docs_dir: Path) -> str:
    """A line linking the other pages of this benchmark in docs_dir (other budgets, other runs): the pages
    whose first line begins as the template's title does, each with the rest of its title; empty when
    there are none."""
    from doc_template import TEMPLATES
    title = (TEMPLATES / "fonts.md").read_text().split("\n", 1)[0].split("$", 1)[0]
    links = []
    for page in sorted(docs_dir.glob("*.md")):
        if page.stem == doc_name(results):
            continue
        first = page.read_text().split("\n", 1)[0]
        if first.startswith(title):
            links.append(f"[{page.name}]({page.name}) ({first[len(title):]})")
    return f"\nOther pages of this benchmark: {', '.join(links)}.\n" if links else ""


def pictures(results: dict, docs_dir: Path) -> str:
    """NAME_swaps.png and NAME_grid.png from the best seed (held-out 8-shot PSNR) of the first method; a
    line saying which, or why there are none."""
    from PIL import Image

    from g2g.evaluation.fonts import font_char_grid, swap_panel
    from g2g.inference import load
    first = results["methods"][0]
    runs = [r for r in results["runs"] if r.get("method") == first and "error" not in r
            and Path(r["model"]).is_file() and "rows" in r["scores"][SPLITS[1]]]
    if not runs:
        return f"No pictures: no model file of a finished {first} run is on disk."
    best = max(runs, key=lambda r: r["scores"][SPLITS[1]]["rows"][f"model {max(K_SHOTS)}-shot"]["psnr"])
    model, seed = load(best["model"]), best["seed"]
    from g2g.data.fonts import FontsDataset
    train_ds, test_ds = (FontsDataset(results["root"], s, results["size"], seed) for s in ("train", "test"))
    panel = swap_panel(model, test_ds, n=8, seed=seed)
    grid = font_char_grid(model, test_ds, range(min(8, test_ds.num_classes)), GRID_CHARS, seed, content_ds=train_ds)
    for name, image in ((f"{doc_name(results)}_swaps.png", panel), (f"{doc_name(results)}_grid.png", grid)):
        Image.fromarray(image.repeat_interleave(2, 1).repeat_interleave(2, 2).permute(1, 2, 0).numpy()).save(
            docs_dir / name)
    return (f"Pictures from {first}, seed {seed} (its best held-out 8-shot PSNR), drawn at {results['size']} px "
            f"and shown at twice that.")


def write_docs(results: dict, docs_dir: Path) -> Path:
    """docs_dir/NAME.md (and its pictures) from the results; NAME is results["doc_name"] (default fonts)."""
    from doc_template import block, render
    docs_dir.mkdir(parents=True, exist_ok=True)
    tables, checks = {}, {}
    for split in reversed(SPLITS):  # held-out fonts first
        if all("rows" in j["scores"][split] for j in results["judges"].values()):
            tables[split], checks[split] = split_table(results, split)
        else:
            tables[split] = next(j["scores"][split]["skipped"] for j in results["judges"].values()
                                 if "rows" not in j["scores"][split]) + "\n"
    held = checks.get(SPLITS[1], {})
    floor_met = [m for m, (f, _) in held.items() if not f]
    goal_met = [m for m, (f, g) in held.items() if not f and not g]
    seed0 = results["judges"][str(results["seeds"][0])]
    failed = [f"{r['method']} seed {r['seed']} ({r['error']})" for r in results["runs"] if "error" in r]
    text = render(
        "fonts.md", command=results["command"], results_json=Path(results["out_dir"]) / "results.json",
        census=seed0["census"], budget=results["budget_s"], size=results["size"], root=results["root"],
        threads_title="" if results["threads"] == 1 else f", {results['threads']} CPU threads each",
        seeds=", ".join(map(str, results["seeds"])), pairs=results["pairs"], threads=results["threads"],
        judge_steps=results["judge_steps"], overrides=" ".join(results["overrides"]) or "none",
        judge_accuracy=_judge_accuracy(results),
        methods=block([f"| {m} | {t['preset']} | {t['change']} | `{' '.join(t['overrides']) or '–'}` |"
                       for m, t in results["method_table"].items()]),
        heldout_table=tables[SPLITS[1]], training_table=tables[SPLITS[0]],
        floor=("Meets the floor on held-out fonts: " + ", ".join(floor_met) + ".") if floor_met else
              "No method meets the floor on held-out fonts.",
        goal=("Meets the goal on held-out fonts: " + ", ".join(goal_met) + ".") if goal_met else
             "No method meets the goal on held-out fonts.",
        sentences=block([sentence(results, m) for m in results["methods"]]),
        runs=block([_run_line(r) for r in results["runs"]]),
        failed=("\nFailed runs (left out of the tables): " + "; ".join(failed) + ".\n") if failed else "",
        rescored=rescored_words(results) + older_words(results["runs"], results.get("codes", {}), "method"),
        doc=doc_name(results), others=other_pages(results, docs_dir),
        pictures=pictures(results, docs_dir))
    out = docs_dir / f"{doc_name(results)}.md"
    out.write_text(text + "\n")
    return out


def rescored_words(results: dict) -> str:
    """A sentence on runs scored again by a later evaluation than the one they were trained with."""
    again = [r for r in results["runs"] if "rescored" in r]
    if not again:
        return ""
    return (f"\n{len(again)} of the {_runs(len(results['runs']))} were scored again without training "
            "(`--rescore`): the models are those of the training runs, the numbers those of a later evaluation; each "
            "run's record holds the code digest it was trained with (settings) and scored with (rescored).\n")


def _judge_accuracy(results: dict) -> str:
    acc = [j["scores"]["judges"]["accuracy"] for j in results["judges"].values()]
    return ", ".join(f"{name} {100 * _mean([a[name] for a in acc]):.1f} %" for name in acc[0])


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def collapse_words(r: dict) -> str:
    """A run's collapse verdict without the advice that follows a collapse."""
    from g2g.collapse import ADVICE
    return r["collapse"]["verdict"].removesuffix(f"; {ADVICE}")


def _run_line(r: dict) -> str:
    if "error" in r:
        return f"| {r['method']} | {r['seed']} | – | – | failed: {r['error']} |"
    return f"| {r['method']} | {r['seed']} | {r['steps']} | {r['train_seconds']:.0f} | {collapse_words(r)} |"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=FONTS_ROOT, help="the font folder (default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS), metavar="NAME",
                   help=f"of {' '.join(METHODS)} (default: all)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2],
                   help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--budget", type=int, default=1800, help="seconds of training per run (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: %(default)s)")
    p.add_argument("--size", type=int, default=32, help="image side in px (default: %(default)s)")
    p.add_argument("--pairs", type=int, default=2000, help="scored pairs per split (default: %(default)s)")
    p.add_argument("--judge-steps", type=int, default=2000, help="Adam steps of each judge (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=Path("outputs/fonts"), help="run folders and results.json")
    p.add_argument("--write-docs", action="store_true", help="write NAME.md and its pictures into --docs-dir")
    p.add_argument("--doc-name", default=None, metavar="NAME",
                   help=f"the doc's name, kept in results.json: NAME.md, NAME_swaps.png, NAME_grid.png (default: "
                        f"{DOC_NAME}; with --from-json, the name saved there); e.g. a page for another budget")
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs", help="(default: docs/ of this checkout)")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="the doc from a saved results.json, without training")
    p.add_argument("--rescore", action="store_true",
                   help="score the finished runs in --out-dir again with this checkout's evaluation, without "
                        "training (their training records kept, each marked rescored)")
    p.add_argument("--reuse-older", nargs="+", default=[], choices=list(METHODS), metavar="NAME",
                   help="reuse these methods' finished runs made with another version of the code when their "
                        "other settings match (the doc says so), instead of training them again")
    p.add_argument("--run", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--rescore-run", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--judge", type=int, metavar="SEED", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="after `--`: extra `g2g train` options for every run")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The options of a benchmark run (a run process takes the same)."""
    p = parser()
    args = p.parse_args(argv)
    args.argv = argv
    if min(args.budget, args.threads, args.jobs, args.pairs, args.judge_steps) < 1 or not args.seeds:
        p.error("--budget, --threads, --jobs, --pairs and --judge-steps must be at least 1, --seeds not empty")
    if args.from_json is not None and not args.write_docs:
        p.error("--from-json writes the doc: give --write-docs with it")
    if (stray := stray_arguments(argv, args.overrides)) is not None:
        p.error(f"{stray}; seeds are comma-separated (--seeds 0,1,2)")
    if args.doc_name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", args.doc_name):
        p.error(f"--doc-name {args.doc_name!r}: use letters, digits, - and _ only (it names files in --docs-dir)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    if args.judge is not None:
        fit_judges(args, args.judge)
        return 0
    if args.run:
        run_one(args.run[0], int(args.run[1]), args)
        return 0
    if args.rescore_run:
        rescore_one(args.rescore_run[0], int(args.rescore_run[1]), args)
        return 0
    named = {} if args.doc_name is None else {"doc_name": args.doc_name}  # --from-json: overrides the saved name
    return docs_or_benchmark("fonts.py", args, run_benchmark, lambda results, d: write_docs({**results, **named}, d))


if __name__ == "__main__":
    sys.exit(main())
