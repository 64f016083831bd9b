"""Presets on the validation datasets: each preset trained on each built-in dataset at 32 px for the same CPU
time budget and evaluated with a light `g2g eval`; docs/validation.md generated from the results, with the
preset that does best across all datasets.

    python benchmarks/validation.py --jobs 2 --write-docs     # g2g and general × scenes, parts, shapes, digits
    python benchmarks/validation.py --from-json outputs/validation/results.json --write-docs   # the doc again
    python benchmarks/validation.py --presets g2g --datasets scenes --budget 60 -- --data.batch_size 8

`scenes` and `parts` are data no preset was tuned on; `shapes` and `digits` are what presets were tuned on.
Each run is its own process (this file with --run, OMP_NUM_THREADS = --threads): `g2g train` of the preset
on the dataset at --size px for --budget seconds (trainer.max_time; the preset's step and epoch limits
lifted), then `g2g eval` of the exported EMA generator with quality.py's light settings (quality.EVAL),
judged by one independent classifier per dataset and seed (quality.train_judge, its own process). Runs land
in --out-dir/<dataset>/<preset>/seed<S>/ (run.json, log.txt, train/, snapshots/, eval/); a run whose
run.json has the same settings is reused. All records go to --out-dir/results.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from g2g.configs import preset_args  # noqa: E402
from fonts import cell, code_digest, collapse_words, older_words, reusable, seed_options, spawn  # noqa: E402
from quality import (docs_or_benchmark, EVAL, BenchmarkError, judge_file, load_judge, slug, stray_arguments,  # noqa: E402
                     summary, train_judge, train_staged)

DATASETS = ("scenes", "parts", "shapes", "digits")
TUNED_ON = ("shapes", "digits")  # the data the presets were tuned on
# table columns: (key of a run's metrics, header, scale, decimals)
COLUMNS = [("swap_psnr", "held-out swap PSNR dB", 1, 2), ("class_transfer", "class transfer %", 100, 1),
           ("copy_through", "copy-through %", 100, 1), ("short_psnr", "short rec. PSNR dB", 1, 2),
           ("steps", "steps", 1, 0)]


def metrics(report: dict) -> dict:
    """The table's numbers of one `g2g eval` report: on the held-out classes where the dataset has them
    (scenes, parts, shapes), else on its test split; the swap PSNR only where swaps have a true render."""
    s = summary(report)
    split = report.get("heldout_classes") or report.get("seen_classes") or report["test"]
    copy = split["copy_through"]
    out = {"short_psnr": s["short_psnr"],
           "copy_through": (copy.get("true_render") or copy["reconstruction"])["rate"]}
    tag = "_heldout" if "heldout_classes" in report else ""
    for key in ("swap_psnr", "flat_psnr", "class_transfer", "class_chance"):
        if f"{key}{tag}" in s:
            out[key] = s[f"{key}{tag}"]
    return out


def run_one(preset: str, dataset: str, seed: int, args) -> dict:
    """Train and evaluate one run; writes and returns its record (run.json)."""
    from g2g.evaluation.report import run_eval
    torch.set_num_threads(args.threads)
    here = args.out_dir / dataset / slug(preset) / f"seed{seed}"
    points = train_staged([*preset_args(preset), "--data.dataset", dataset, "--data.image_size", str(args.size),
                           "--trainer.max_steps", "-1", "--trainer.max_epochs", "-1", *seed_options(seed),
                           *args.overrides], here, args.budget)
    start = time.monotonic()
    classifier = load_judge(judge_file(args.out_dir, dataset, args.size, seed, args.classifier_steps))
    report = run_eval(here / "snapshots" / points[-1]["file"], data=dataset, out_dir=here / "eval", seed=seed,
                      device="cpu", networks={"classifier": classifier, "lpips": None, "inception": None}, **EVAL)
    record = {"preset": preset, "dataset": dataset, "seed": seed, "settings": run_settings(args, preset),
              "steps": points[-1]["step"], "train_seconds": points[-1]["seconds"],
              "eval_seconds": round(time.monotonic() - start, 1),
              "metrics": {**metrics(report), "steps": points[-1]["step"]},
              "collapse": {"collapsed": report["collapse"]["collapsed"], "verdict": report["collapse"]["verdict"]}}
    (here / "run.json").write_text(json.dumps(record, indent=1))
    return record


def run_settings(args, preset: str) -> dict:
    """What a run's numbers depend on besides preset, dataset and seed: a run is reused only when equal."""
    return {"code": code_digest([preset]), "size": args.size, "budget_s": args.budget, "threads": args.threads,
            "classifier_steps": args.classifier_steps, "overrides": list(args.overrides),
            "eval": {**EVAL, "k_shots": list(EVAL["k_shots"])}}


def child_args(args) -> list[str]:
    return ["--size", str(args.size), "--budget", str(args.budget), "--threads", str(args.threads),
            "--classifier-steps", str(args.classifier_steps), "--out-dir", str(args.out_dir), "--", *args.overrides]


def run_benchmark(args) -> dict:
    """Train the missing judges, then the runs whose records are missing or stale; write results.json."""
    now = lambda: datetime.datetime.now().isoformat(timespec="seconds")  # noqa: E731
    started = now()
    judges = [(d, s) for d in args.datasets for s in args.seeds
              if not judge_file(args.out_dir, d, args.size, s, args.classifier_steps).is_file()]
    records, todo = {}, []
    for d in args.datasets:
        for p in args.presets:
            for s in args.seeds:
                old = reusable(args.out_dir / d / slug(p) / f"seed{s}" / "run.json", run_settings(args, p),
                               p in args.reuse_older)
                if old is not None:
                    records[(d, p, s)] = old
                else:
                    todo.append((d, p, s))
    print(f"{len(judges)} classifiers to train, {len(todo)} runs to do, {len(records)} reused; {args.jobs} at a time",
          flush=True)

    def judge(task):
        d, s = task
        log = args.out_dir / "judges" / f"{d}-seed{s}.log"
        if spawn(__file__, ["--judge", d, str(s), *child_args(args)], args.threads, log)[0]:
            raise BenchmarkError(f"training the independent classifier of {d}, seed {s} failed: see {log}")

    def run(task):
        d, p, s = task
        here = args.out_dir / d / slug(p) / f"seed{s}"
        rc, wall = spawn(__file__, ["--run", p, d, str(s), *child_args(args)], args.threads, here / "log.txt")
        record = ({"preset": p, "dataset": d, "seed": s, "error": f"exit status {rc}; see {here / 'log.txt'}"} if rc
                  else {**json.loads((here / "run.json").read_text()), "wall_seconds": wall})
        print(f"{d} {p} seed {s}: {record.get('error') or record['collapse']['verdict'][:80]}", flush=True)
        return task, record

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(judge, judges))
        records.update(pool.map(run, todo))
    results = {"started": started, "finished": now(),
               "command": "python benchmarks/validation.py " + shlex.join(args.argv), "size": args.size,
               "budget_s": args.budget, "threads": args.threads, "jobs": args.jobs, "seeds": args.seeds,
               "classifier_steps": args.classifier_steps, "overrides": args.overrides, "presets": args.presets,
               "datasets": args.datasets, "eval": run_settings(args, args.presets[0])["eval"],
               "out_dir": str(args.out_dir), "codes": {p: run_settings(args, p)["code"] for p in args.presets},
               "runs": [records[(d, p, s)] for d in args.datasets for p in args.presets for s in args.seeds]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


# ---- the doc (its numbers from the records, its prose from templates/validation.md) ----

def values(results: dict, dataset: str, preset: str, key: str) -> list[float]:
    """One number per finished run (seed) of a preset on a dataset."""
    return [r["metrics"][key] for r in results["runs"] if "error" not in r and r["dataset"] == dataset
            and r["preset"] == preset and key in r["metrics"]]


def ranking(results: dict) -> tuple[list[tuple[str, float]], str]:
    """Presets by mean rank over datasets, best first, and the rule in words. On each dataset a preset is
    ranked by its seed-mean held-out swap PSNR (class transfer where swaps have no true render); a preset
    with a failed or collapsed run on that dataset ranks after every preset without one."""
    ranks: dict[str, list[float]] = {p: [] for p in results["presets"]}
    for d in results["datasets"]:
        key = "swap_psnr" if any(values(results, d, p, "swap_psnr") for p in results["presets"]) else "class_transfer"
        for rank, p in enumerate(sorted(results["presets"], key=lambda p: _standing(results, d, p, key)), 1):
            ranks[p].append(rank)
    order = sorted(((p, sum(r) / len(r)) for p, r in ranks.items()), key=lambda x: x[1])
    rule = ("mean over datasets of each preset's rank on held-out swap PSNR (class transfer on datasets without "
            "true swaps), a preset with a failed or collapsed run on a dataset ranked after every preset without one")
    return order, rule


def _standing(results: dict, dataset: str, preset: str, key: str) -> tuple[int, float]:
    """A preset's sort key on a dataset: (1 when a run failed or collapsed, −seed mean of key)."""
    runs = [r for r in results["runs"] if r["dataset"] == dataset and r["preset"] == preset]
    bad = any("error" in r or r["collapse"]["collapsed"] for r in runs)
    v = values(results, dataset, preset, key)
    return (1 if bad or not v else 0, -sum(v) / len(v) if v else 0.0)


def table(results: dict) -> str:
    head = "| dataset | preset | " + " | ".join(h for _, h, *_ in COLUMNS) + " | collapse check |"
    lines = [head, "|---" * (len(COLUMNS) + 3) + "|"]
    for d in results["datasets"]:
        tuned = " (tuned on)" if d in TUNED_ON else ""
        for p in results["presets"]:
            runs = [r for r in results["runs"] if r["dataset"] == d and r["preset"] == p]
            verdicts = "; ".join(f"seed {r['seed']}: " + (f"failed ({r['error']})" if "error" in r else
                                                          collapse_words(r))
                                 for r in runs)
            cells = " | ".join(cell(values(results, d, p, k), scale, dec) for k, _, scale, dec in COLUMNS)
            lines.append(f"| {d}{tuned} | {p} | {cells} | {verdicts} |")
        flat = [v for p in results["presets"] for v in values(results, d, p, "flat_psnr")[:1]][:1]
        chance = [v for p in results["presets"] for v in values(results, d, p, "class_chance")[:1]][:1]
        lines.append(f"| {d}{tuned} | *flat image* | {cell(flat, 1, 2)} | {cell(chance, 100, 1)} (chance) | – | – "
                     f"| – | – |")
    return "\n".join(lines) + "\n"


def write_docs(results: dict, docs_dir: Path) -> Path:
    from doc_template import render
    order, rule = ranking(results)
    best = order[0][0]
    bad = [d for d in results["datasets"] if _standing(results, d, best, "steps")[0]]
    if bad:
        best += f", though it failed or collapsed on {', '.join(bad)}"
    text = render("validation.md", command=results["command"],
                  results_json=Path(results["out_dir"]) / "results.json", budget=results["budget_s"],
                  size=results["size"], threads=results["threads"], seeds=", ".join(map(str, results["seeds"])),
                  overrides=" ".join(results["overrides"]) or "none", n_pairs=results["eval"]["n_pairs"],
                  classifier_steps=results["classifier_steps"], table=table(results), rule=rule, best=best,
                  ranks=", ".join(f"{p} {r:.2f}" for p, r in order),
                  older=older_words(results["runs"], results.get("codes", {}), "preset"))
    docs_dir.mkdir(parents=True, exist_ok=True)
    out = docs_dir / "validation.md"
    out.write_text(text + "\n")
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    """The options of a benchmark run (a run process takes the same)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["g2g", "general"], metavar="NAME")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--reuse-older", nargs="+", default=[], metavar="NAME",
                   help="reuse these presets' finished runs made with another version of the code when their other "
                        "settings match (the doc says so), instead of training them again")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0],
                   help="comma-separated seeds (default: 0)")
    p.add_argument("--budget", type=int, default=510, help="seconds of training per run (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: %(default)s)")
    p.add_argument("--size", type=int, default=32, help="image side in px (default: %(default)s)")
    p.add_argument("--classifier-steps", type=int, default=3300,
                   help="training steps of each independent classifier (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=Path("outputs/validation"), help="run folders and results.json")
    p.add_argument("--write-docs", action="store_true", help="write validation.md into --docs-dir")
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs", help="(default: docs/ of this checkout)")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="the doc from a saved results.json, without training")
    p.add_argument("--run", nargs=3, metavar=("PRESET", "DATASET", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--judge", nargs=2, metavar=("DATASET", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="after `--`: extra `g2g train` options for every run")
    args = p.parse_args(argv)
    args.argv = argv
    if min(args.budget, args.threads, args.jobs, args.classifier_steps) < 1 or not args.seeds:
        p.error("--budget, --threads, --jobs and --classifier-steps must be at least 1, --seeds not empty")
    if (stray := stray_arguments(argv, args.overrides)) is not None:
        p.error(f"{stray}; seeds are comma-separated (--seeds 0,1,2)")
    if args.from_json is not None and not args.write_docs:
        p.error("--from-json writes the doc: give --write-docs with it")
    if unknown := [n for n in args.reuse_older if n not in args.presets]:
        p.error(f"--reuse-older {' '.join(unknown)}: not among --presets {' '.join(args.presets)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    if args.judge:
        train_judge(args.out_dir, args.judge[0], args.size, int(args.judge[1]), args.classifier_steps)
        return 0
    if args.run:
        run_one(args.run[0], args.run[1], int(args.run[2]), args)
        return 0

    def checked_run(args) -> dict:
        code_digest(args.presets)  # an unknown preset fails here, before anything runs
        return run_benchmark(args)
    return docs_or_benchmark("validation.py", args, checked_run, write_docs)


if __name__ == "__main__":
    sys.exit(main())
