"""Quality of the g2g preset and its ablations at a fixed CPU time budget, and docs/results.md
generated from the results.

    python benchmarks/quality.py --budget 300 --jobs 2 --write-docs   # 6 variants × 2 datasets × 3 seeds, the doc
    python benchmarks/quality.py --from-json outputs/quality/results.json   # the doc again, without training
    python benchmarks/quality.py --variants g2g no-long --datasets shapes --seeds 2 --budget 60 -- --data.batch_size 8

Each run is its own process (this file with --run, OMP_NUM_THREADS = --threads): `g2g train` of the
preset with the variant's overrides (and any given after `--`) for --budget seconds of training
(trainer.max_time), with a callback that exports the EMA generator at the start, every budget/--points
seconds and at the end; then cheap metrics of those snapshots (the curve of metric vs training time), a
light `g2g eval` of the final model (fewer pairs, linear probes only, one DCI fit) and, for seed 0, a
class × content grid. Every run of a dataset and seed is judged by one independent classifier, trained
once (its own process, --judge) on that seed's judge images. Runs land in --out-dir/<dataset>/<variant>/
seed<S>/ (run.json, log.txt, train/, eval/); a run whose run.json has the same settings is reused, so an
interrupted benchmark continues where it stopped. All records go to --out-dir/results.json.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from g2g.configs import load_preset, preset_args, preset_files  # noqa: E402
from g2g.inference import export_generator  # noqa: E402

QUESTION = "Does the G2G cross-training cycle (long reconstruction) help disentanglement?"
DATASETS = ("shapes", "digits")
# a light `g2g eval` of the final model: a fraction of the default work, no MLP probes, one DCI fit
EVAL = {"n_pairs": 500, "k_shots": (1,), "n_probe": 1000, "mlp_probes": False, "dci_repeats": 1}
CURVE_PAIRS = 500          # test pairs for each point of the metric-vs-time curve


from quality_variants import DEFAULT_VARIANTS, VARIANTS  # noqa: E402

# table columns: (metric key, header, scale, decimals); "_heldout" keys are the held-out classes (shapes)
COLUMNS = [("swap_psnr", "swap PSNR dB", 1, 2), ("swap_psnr_heldout", "swap PSNR dB, held-out", 1, 2),
           ("class_transfer", "class transfer %", 100, 1),
           ("class_transfer_heldout", "class transfer %, held-out", 100, 1),
           ("probe", "class from content %", 100, 1), ("dci", "DCI disentanglement", 1, 3),
           ("ratio", "double-swap / short L1", 1, 3), ("short_psnr", "short rec. PSNR dB", 1, 2),
           ("steps", "steps", 1, 0)]
# the answer to QUESTION compares the variant with the long reconstruction against the one without
WITH_LONG, WITHOUT_LONG = "g2g", "no-long"
# what it compares: (metric, words, better when, unit)
EVIDENCE = [("swap_psnr", "swap PSNR", "higher", " dB"), ("class_transfer", "class transfer", "higher", " %"),
            ("probe", "class from the content code", "lower", " %")]
CURVES = {"swap_psnr": "swap PSNR (dB), seen classes", "class_transfer": "class transfer (%)"}


def variant_table(names: list[str]) -> dict:
    """What each variant changes, in words and options (saved with the results: the doc is written from them)."""
    return {v: {"change": VARIANTS[v].change, "overrides": list(VARIANTS[v].overrides)} for v in names}


def slug(name: str) -> str:
    """A variant's name as a file name: K=4 → k4, +adv → adv."""
    return "".join(c for c in name.lower() if c.isalnum() or c == "-")


# ---- one run (in its own process) ----

class TimedExports(Callback):
    """Exports the EMA generator at the start of training, after each k·budget_s/intervals seconds of
    training (k = 1 … intervals − 1) and at the end, as <dirpath>/step<N>.safetensors; points.json lists
    them with the step and the seconds since the start of training (intervals + 1 points in all)."""

    def __init__(self, dirpath: str, budget_s: float, intervals: int):
        self.dirpath, self.every_s, self.intervals = Path(dirpath), budget_s / intervals, intervals
        self.points: list[dict] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.monotonic()
        self._export(trainer, pl_module, 0.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds = time.monotonic() - self.start
        if len(self.points) < self.intervals and seconds >= self.every_s * len(self.points):
            self._export(trainer, pl_module, seconds)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.points[-1]["step"] != trainer.global_step:
            self._export(trainer, pl_module, time.monotonic() - self.start)

    def _export(self, trainer, pl_module, seconds: float) -> None:
        path = export_generator(pl_module.generator_ema, self.dirpath / f"step{trainer.global_step}.safetensors")
        self.points.append({"step": trainer.global_step, "seconds": round(seconds, 2), "file": path.name})
        (self.dirpath / "points.json").write_text(json.dumps(self.points, indent=1))


def train_staged(argv: list[str], here: Path, budget: int, intervals: int = 1,
                 stale: tuple[str, ...] = ()) -> list[dict]:
    """`g2g train` argv for `budget` seconds into here/train, the EMA generator exported by TimedExports
    into here/snapshots; its export points (step, seconds, file). The run trains in here/next and replaces
    an earlier run in here (its run.json, train/, snapshots/ and the folders named in stale) only once it
    has finished: a run that fails (bad options, a crash) leaves the earlier one as it was."""
    from g2g.training import run_training
    new = here / "next"
    shutil.rmtree(new, ignore_errors=True)  # what a run that did not finish left
    exports = {"class_path": "quality.TimedExports",
               "init_args": {"dirpath": str(new / "snapshots"), "budget_s": budget, "intervals": intervals}}
    run_training([*argv, "--trainer.max_time", max_time(budget), "--trainer.default_root_dir", str(new / "train"),
                  "--trainer.enable_progress_bar", "false", f"--trainer.callbacks+={json.dumps(exports)}"])
    (here / "run.json").unlink(missing_ok=True)  # nothing of the earlier run may pass for this one
    for part in stale:
        shutil.rmtree(here / part, ignore_errors=True)
    for part in ("train", "snapshots"):
        shutil.rmtree(here / part, ignore_errors=True)
        (new / part).rename(here / part)
    new.rmdir()
    return json.loads((here / "snapshots" / "points.json").read_text())


def stray_arguments(argv: list[str], overrides: list[str]) -> str | None:
    """An error for arguments that argparse took as `g2g train` options although they came before `--`
    (`--seeds 0 1`: the 1), else None."""
    given = argv[argv.index("--") + 1:] if "--" in argv else []
    if overrides == given:
        return None
    return (f"unexpected argument(s) {' '.join(overrides[:max(1, len(overrides) - len(given))])}: `g2g train` "
            "options go after --")


def max_time(seconds: int) -> str:
    """trainer.max_time's DD:HH:MM:SS."""
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours // 24:02d}:{hours % 24:02d}:{m:02d}:{s:02d}"


def run_dir(out_dir: Path, dataset: str, variant: str, seed: int) -> Path:
    return out_dir / dataset / slug(variant) / f"seed{seed}"


def judge_file(out_dir: Path, dataset: str, size: int, seed: int, steps: int) -> Path:
    return out_dir / "judges" / f"{dataset}-{size}px-seed{seed}-{steps}steps.pt"


def train_judge(out_dir: Path, dataset: str, size: int, seed: int, steps: int) -> None:
    from g2g.evaluation.report import independent_classifier
    classifier = independent_classifier(dataset, size, seed=seed, classifier_steps=steps)
    path = judge_file(out_dir, dataset, size, seed, steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(classifier.state_dict(), path)


def load_judge(path: Path) -> torch.nn.Module:
    from g2g.evaluation.metrics import Classifier
    from g2g.evaluation.report import JUDGE_SIZE, Downsized
    if not path.is_file():
        raise FileNotFoundError(f"no independent classifier at {path}: the judge phase did not train one "
                                f"for this image size (give --data.image_size as `--data.image_size N`)")
    state = torch.load(path, weights_only=True)
    net = Downsized(Classifier(state["net.head.weight"].shape[0], width=state["net.features.0.weight"].shape[0]),
                    JUDGE_SIZE)  # as independent_classifier returns it
    net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def curve_point(model, x1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, target, classifier) -> dict:
    """The curve's cheap metrics of one snapshot on fixed pairs: m1 = G(a1, b2) against the true render
    (swap PSNR, shapes) and as the independent classifier sees it (class transfer)."""
    from g2g.evaluation.metrics import classify, per_image_psnr
    m1 = model.decode(model.generator.encode_content(x1), model.encode_class(x2)).cpu()
    point = {"class_transfer": (classify(classifier, m1) == y2).float().mean().item()}
    if target is not None:
        point["swap_psnr"] = per_image_psnr(m1, target).mean().item()
    return point


def summary(report: dict) -> dict:
    """The table's numbers of one `g2g eval` report, with their reference levels."""
    main = report.get("seen_classes") or report["test"]
    out = {"short_psnr": main["short_reconstruction"]["psnr"], "ratio": main["reassembly"]["ratio"]}
    for tag, split in (("", main), ("_heldout", report.get("heldout_classes"))):
        if split is None:
            continue
        if "swap" in split:
            swap = split["swap"]
            out.update({f"swap_psnr{tag}": swap["psnr"], f"flat_psnr{tag}": swap["baseline_flat_psnr"],
                        f"copy_psnr{tag}": swap["baseline_copy_content_source_psnr"]})
        if "class_transfer" in split:
            out.update({f"class_transfer{tag}": split["class_transfer"]["accuracy"],
                        f"class_chance{tag}": split["class_transfer"]["chance"]})
    if "class_from_content_probe" in main:
        probe = main["class_from_content_probe"]
        out.update(probe=probe["accuracy"], probe_chance=probe["chance"])
    if "dci" in main:
        out["dci"] = main["dci"]["disentanglement"]
    return out


def run_one(variant: str, dataset: str, seed: int, args) -> dict:
    """Train, snapshot, evaluate one run; writes and returns its record (run.json)."""
    from g2g.bench_timing import machine
    from g2g.data.datamodule import make_dataset
    from g2g.demo import grid_figure
    from g2g.evaluation.pairs import make_pairs
    from g2g.evaluation.report import run_eval
    from g2g.inference import load
    torch.set_num_threads(args.threads)
    here = run_dir(args.out_dir, dataset, variant, seed)
    load_start = round(os.getloadavg()[0], 2)
    points = train_staged([*preset_args("g2g"), "--data.dataset", dataset, "--seed_everything", str(seed),
                           "--model.seed", str(seed), "--data.seed", str(seed), *VARIANTS[variant].overrides,
                           *args.overrides], here, args.budget, args.points, stale=("eval",))
    start = time.monotonic()
    model = load(here / "snapshots" / points[-1]["file"])
    size = model.config.image_size
    classifier = load_judge(judge_file(args.out_dir, dataset, size, seed, args.classifier_steps))
    test = make_dataset(dataset, "test", size, seed=seed)  # run_eval's main split
    i, j = make_pairs(test.labels, CURVE_PAIRS, seed)
    target = None
    if dataset == "shapes":
        from g2g.data.shapes import render
        target = render(test.labels[j], test.factors[i], size)
    for p in points:
        p.update(curve_point(load(here / "snapshots" / p["file"]), test.images[i], test.images[j], test.labels[j],
                             target, classifier))
    report = run_eval(here / "snapshots" / points[-1]["file"], data=dataset, out_dir=here / "eval", seed=seed,
                      device="cpu", networks={"classifier": classifier, "lpips": None, "inception": None}, **EVAL)
    grid = grid_figure(model, here / "grid.png", size, seed=seed, dataset=dataset) if seed == 0 else None
    record = {"variant": variant, "dataset": dataset, "seed": seed, "settings": run_settings(args, variant),
              "steps": points[-1]["step"], "train_seconds": points[-1]["seconds"],
              "eval_seconds": round(time.monotonic() - start, 1), "load_1min_start": load_start,
              "load_1min_end": round(os.getloadavg()[0], 2), "machine": machine(), "curve": points,
              "metrics": {**summary(report), "steps": points[-1]["step"]},
              "grid": None if grid is None else str(grid.relative_to(args.out_dir))}
    (here / "run.json").write_text(json.dumps(record, indent=1))
    return record


def code_digest() -> str:
    """sha256 (16 hex digits) of the preset and of the package's source: a run made with other code or another
    preset is not reused."""
    h = hashlib.sha256()
    for path in [*preset_files("g2g"), *sorted((ROOT / "src" / "g2g").rglob("*.py"))]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def run_settings(args, variant: str) -> dict:
    """What a run's numbers depend on besides variant, dataset and seed: a run is reused only when equal."""
    return {"code": code_digest(), "budget_s": args.budget, "threads": args.threads, "points": args.points,
            "classifier_steps": args.classifier_steps, "overrides": [*VARIANTS[variant].overrides, *args.overrides],
            "eval": {**EVAL, "k_shots": list(EVAL["k_shots"])}, "curve_pairs": CURVE_PAIRS}


# ---- the benchmark: judges, then runs, each a process ----

def image_size(overrides: list[str]) -> int:
    """data.image_size of the runs: the last `--data.image_size N` (or =N) of the overrides, else the preset's."""
    size = load_preset("g2g")["data"]["image_size"]
    for k, arg in enumerate(overrides):
        if arg.startswith("--data.image_size="):
            size = int(arg.split("=", 1)[1])
        elif arg == "--data.image_size" and k + 1 < len(overrides):
            size = int(overrides[k + 1])
    return size


def _process(argv: list[str], args, log: Path) -> tuple[int, float]:
    """Run this file with argv in a process of its own with --threads threads; (exit status, seconds)."""
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    common = ["--budget", str(args.budget), "--threads", threads, "--points", str(args.points),
              "--classifier-steps", str(args.classifier_steps), "--out-dir", str(args.out_dir)]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, __file__, *argv, *common, "--", *args.overrides], env=env,
                            stdout=f, stderr=subprocess.STDOUT).returncode
    return rc, round(time.monotonic() - start, 1)


class BenchmarkError(RuntimeError):
    """A step every run needs failed (main prints it as one line)."""


def run_benchmark(args) -> dict:
    """Train the missing judges, then the runs whose records are missing or stale; write results.json."""
    now = lambda: datetime.datetime.now().isoformat(timespec="seconds")  # noqa: E731
    started, load_start = now(), round(os.getloadavg()[0], 2)
    size, seeds = image_size(args.overrides), range(args.seeds)
    judges = [(d, s) for d in args.datasets for s in seeds
              if not judge_file(args.out_dir, d, size, s, args.classifier_steps).is_file()]
    todo, records = [], {}
    for d in args.datasets:
        for v in args.variants:
            for s in seeds:
                saved = run_dir(args.out_dir, d, v, s) / "run.json"
                old = json.loads(saved.read_text()) if saved.is_file() else None
                if old is not None and old.get("settings") == run_settings(args, v):
                    records[(d, v, s)] = old
                else:
                    todo.append((d, v, s))
    print(f"{len(judges)} classifiers to train, {len(todo)} runs to do, {len(records)} reused; "
          f"{args.jobs} at a time", flush=True)

    def judge(task):
        d, s = task
        log = args.out_dir / "judges" / f"{d}-seed{s}.log"
        if _process(["--judge", d, str(s)], args, log)[0]:
            raise BenchmarkError(f"training the independent classifier of {d}, seed {s} failed: see {log}")

    def run(task):
        d, v, s = task
        here = run_dir(args.out_dir, d, v, s)
        rc, wall = _process(["--run", v, d, str(s)], args, here / "log.txt")
        if rc:
            record = {"variant": v, "dataset": d, "seed": s, "error": f"exit status {rc}; see {here / 'log.txt'}"}
        else:
            record = {**json.loads((here / "run.json").read_text()), "wall_seconds": wall}
            (here / "run.json").write_text(json.dumps(record, indent=1))
        print(f"{d} {v} seed {s}: {record.get('error') or _brief(record)}", flush=True)
        return task, record

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(judge, judges))
        records.update(pool.map(run, todo))
    order = sorted(records, key=lambda k: (args.datasets.index(k[0]), args.variants.index(k[1]), k[2]))
    results = {"question": QUESTION, "started": started, "finished": now(),
               "load_1min_start": load_start, "load_1min_end": round(os.getloadavg()[0], 2), "jobs": args.jobs,
               "seeds": args.seeds, "budget_s": args.budget, "threads": args.threads, "overrides": args.overrides,
               "variants": args.variants, "datasets": args.datasets, "eval": run_settings(args, "g2g")["eval"],
               "command": "python benchmarks/quality.py " + shlex.join(args.argv), "out_dir": str(args.out_dir),
               "curve_pairs": CURVE_PAIRS, "variant_table": variant_table(args.variants),
               "runs": [records[k] for k in order]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


def _brief(r: dict) -> str:
    m = r["metrics"]
    parts = [f"{r['steps']} steps in {r['train_seconds']:.0f} s"]
    if "swap_psnr" in m:
        parts.append(f"swap PSNR {m['swap_psnr']:.2f} dB")
    parts.append(f"class transfer {100 * m['class_transfer']:.1f} %")
    return ", ".join(parts) + f"; eval {r['eval_seconds']:.0f} s, process {r.get('wall_seconds', 0):.0f} s"


def docs_or_benchmark(prog: str, args, run, write_docs) -> int:
    """The doc from --from-json, or run(args) and (with --write-docs) its doc: the exit code of a benchmark
    whose write_docs(results, docs_dir) returns the written path (fonts.py, validation.py)."""
    if args.from_json is not None:
        if not args.from_json.is_file():
            print(f"{prog}: error: --from-json {args.from_json}: no such file (the benchmark writes it to "
                  f"--out-dir)", file=sys.stderr)
            return 2
        print(f"wrote {write_docs(json.loads(args.from_json.read_text()), args.docs_dir)}")
        return 0
    try:
        results = run(args)
    except (BenchmarkError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if args.write_docs:
        print(f"wrote {write_docs(results, args.docs_dir)}")
    return 1 if any("error" in r for r in results["runs"]) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=300, help="seconds of training per run (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per variant and dataset: 0 … N−1 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (default: %(default)s)")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS), metavar="NAME",
                   help=f"variants to run, of {' '.join(VARIANTS)} (default: {' '.join(DEFAULT_VARIANTS)})")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--points", type=int, default=4,
                   help="curve intervals per run: an export every budget/N s (default: %(default)s)")
    p.add_argument("--classifier-steps", type=int, default=3300,
                   help="training steps of each independent classifier (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=Path("outputs/quality"), help="run folders and results.json")
    p.add_argument("--write-docs", action="store_true", help="write results.md and results_*.png into --docs-dir")
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs", help="(default: docs/ of this checkout)")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="write the doc from a saved results.json, without training")
    p.add_argument("--run", nargs=3, metavar=("VARIANT", "DATASET", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--judge", nargs=2, metavar=("DATASET", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="after `--`: extra `g2g train` options for every run")
    args = p.parse_args(argv)
    args.argv = argv
    if min(args.budget, args.seeds, args.threads, args.jobs, args.points) < 1:
        p.error("--budget, --seeds, --threads, --jobs and --points must be at least 1")
    if (stray := stray_arguments(argv, args.overrides)) is not None:
        p.error(stray)
    if args.judge:
        dataset, seed = args.judge[0], int(args.judge[1])
        train_judge(args.out_dir, dataset, image_size(args.overrides), seed, args.classifier_steps)
        return 0
    if args.run:
        run_one(args.run[0], args.run[1], int(args.run[2]), args)
        return 0
    from quality_doc import write_docs
    if args.from_json is not None:
        if not args.from_json.is_file():
            p.error(f"--from-json {args.from_json}: no such file (the benchmark writes it to --out-dir)")
        results = json.loads(args.from_json.read_text())
        print(f"wrote {write_docs(results, args.docs_dir, args.from_json.parent)}")
        return 0
    try:
        results = run_benchmark(args)
    except BenchmarkError as e:
        print(f"quality.py: error: {e}", file=sys.stderr)
        return 2
    failed = [r for r in results["runs"] if "error" in r]
    if args.write_docs:
        print(f"wrote {write_docs(results, args.docs_dir, args.out_dir)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
