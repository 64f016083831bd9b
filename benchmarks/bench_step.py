"""Training-step speed of the presets, and docs/performance.md generated from the results.

    python benchmarks/bench_step.py --preset g2g --size 64 --batch 8      # one run: same options as `g2g bench`
    python benchmarks/bench_step.py --suite                               # the standard table, one process per run
    python benchmarks/bench_step.py --write-docs                          # docs/performance.md from results/*.json

Each run of the suite is `g2g bench ... --out benchmarks/results/NAME.json` in its own process (a run's
peak RSS is its own). The docs table is generated from those JSON files, each row with the machine and
the load it was measured under; nothing in it is typed by hand. Its prose is templates/performance.md and
templates/performance_time_split.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from data_doc import data_section
from doc_template import block, render

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DOCS = ROOT / "docs" / "performance.md"

# (preset, size, batch in images = 2 × pairs, extra `g2g bench` options): the standard table
SUITE = [
    ("g2g", 32, 32, ["--data", "preset", "--steps", "20"]),   # the preset as `g2g train` runs it on `shapes`
    ("g2g", 64, 8, []), ("g2g", 64, 8, ["--compile", "--warmup", "5"]), ("g2g", 128, 8, []),
    ("cyclefunit", 64, 8, ["--steps", "5", "--warmup", "2"]), ("cyclefunit", 128, 8, ["--steps", "3", "--warmup", "1"]),
    ("cyclefunit-id", 224, 4, ["--steps", "5", "--warmup", "1"]),   # the reference step: batch 4 = 2 pairs
]

# the CPU targets for the reference step (cyclefunit-id, 224 px, batch 4 = 2 pairs)
TARGET_RUN, TARGET_GFLOP, TARGET_RATIO = ("cyclefunit-id", 224, 2), 3700.0, 0.70


def machine_slug(cpu: str) -> str:
    """'AMD EPYC 7B13' → 'amd-epyc', 'Intel(R) Xeon(R) Processor @ 2.50GHz' → 'intel-xeon': the suite keeps each
    machine's results in its own files (runs land on different machines of the same size)."""
    words = [w for w in re.sub(r"\(r\)|\(tm\)", "", cpu.lower()).replace("@", " ").split() if w.isalpha()]
    return "-".join(words[:2]) or "unknown-cpu"


def run_name(preset: str, size: int, batch: int, device: str, extra: list[str], slug: str = "") -> str:
    tag = "-compiled" if "--compile" in extra else ""
    return f"{preset}-{size}px-b{batch}-{device}{tag}" + (f"-{slug}" if slug else "")


def run_suite(device: str, only: list[str] | None) -> None:
    RESULTS.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    sys.path.insert(0, str(ROOT / "src"))
    from g2g.bench_timing import machine
    slug = machine_slug(machine()["cpu"]) if device == "cpu" else ""
    for preset, size, batch, extra in SUITE:
        if only and preset not in only:
            continue
        out = RESULTS / f"{run_name(preset, size, batch, device, extra, slug)}.json"
        with tempfile.TemporaryDirectory() as prof:  # every run profiles 2 more steps: its time split
            cmd = [sys.executable, "-m", "g2g.cli", "bench", "--preset", preset, "--size", str(size),
                   "--batch", str(batch), "--device", device, "--out", str(out), "--profile", prof, *extra]
            print("$", " ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, env=env, check=True)


def _run(r: dict) -> str:
    """The first four columns of a row: which step was measured."""
    return (f"| {r['preset']} | {r['image_size']} | {2 * r['batch_pairs']} ({r['batch_pairs']}) | "
            f"{r['device']} {r['precision']}{' compiled' if r['compile'] else ''}"
            f"{''.join(' ' + o for o in r.get('overrides', []))} |")


def _row(r: dict) -> str:
    m = r["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} threads"
    peak = r["matmul_peak_gflops"][r.get("peak_ratio_of", "fp32")]
    return (f"{_run(r)} {r['step_s_median']:.3f} ({r['step_s_min']:.3f}–"
            f"{r['step_s_max']:.3f}, n={r['steps']}) | {r['images_per_s']:.1f} | {1e3 * r['data_s_median']:.1f} | "
            f"{r['gflop_per_step']:,.1f} | {r['achieved_gflops']:,.1f} | {peak:,.1f} | {100 * r['peak_ratio']:.0f} % | "
            f"{r['peak_memory_mb']:,.0f} | {where}; torch {m['torch']}; code {m.get('code', '?')}; "
            f"load {m.get('load_1min_start', '?')}→{m['load_1min']} | "
            f"{', '.join(r['random_frozen_weights']) or '–'} |")


def verdict(runs: list[dict]) -> list[str]:
    """One line per CPU model: the reference step's FLOPs and share of the matmul peak against the
    targets, from its best-loaded (lowest start load) run on that machine."""
    ref = [r for r in runs if r["device"] == "cpu" and not r["compile"] and not r.get("overrides")
           and (r["preset"], r["image_size"], r["batch_pairs"]) == TARGET_RUN]
    lines = []
    for cpu in sorted({r["machine"]["cpu"] for r in ref}):
        r = min((r for r in ref if r["machine"]["cpu"] == cpu),
                key=lambda r: r["machine"].get("load_1min_start", r["machine"]["load_1min"]))
        flops, ratio = r["gflop_per_step"], r["peak_ratio"]
        lines.append(f"- {cpu}, {r['machine']['torch_threads']} threads: {flops:,.0f} GFLOP/step "
                     f"({'meets' if flops <= TARGET_GFLOP else 'misses'} ≤ {TARGET_GFLOP:,.0f}), "
                     f"{r['achieved_gflops']:,.1f} GFLOP/s = {100 * ratio:.0f} % of the same run's matmul peak "
                     f"{r['matmul_peak_gflops']['fp32']:,.1f} ({'meets' if ratio >= TARGET_RATIO else 'misses'} "
                     f"≥ {100 * TARGET_RATIO:.0f} %); code {r['machine'].get('code', '?')}.")
    return lines


def _split_row(r: dict) -> str:
    split, m = r["time_split"], r["machine"]
    return (f"{_run(r)} {100 * r['peak_ratio']:.0f} % | "
            f"{1e3 * split['matmul_s_per_step']:,.0f} ms = {100 * split['matmul_share']:.0f} % | "
            f"{split['matmul_gflops']:,.1f} | {100 * split['matmul_peak_ratio']:.0f} % | "
            f"{m.get('gpu') or m['cpu']}; code {m.get('code', '?')} |")


def write_docs(results: Path = RESULTS, out: Path = DOCS) -> Path:
    runs = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    runs += [json.loads(line) for p in sorted(results.glob("*.jsonl"))  # sweeps: one result per line
             for line in p.read_text().splitlines() if line.strip()]
    runs.sort(key=lambda r: (r["device"], r["preset"], r["image_size"], r["batch_pairs"], r["compile"],
                             r.get("overrides", [])))
    text = render("performance.md", verdict=block(verdict(runs)), rows=block([_row(r) for r in runs]))
    profiled = [r for r in runs if r.get("time_split")]
    if profiled:
        text += "\n" + render("performance_time_split.md", rows=block([_split_row(r) for r in profiled]))
    data = data_section(results / "data")
    if data:
        text += "\n" + data
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", action="store_true", help="run the standard table into benchmarks/results/")
    p.add_argument("--only", nargs="*", help="with --suite: these presets only")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="with --suite")
    p.add_argument("--write-docs", action="store_true", help="write docs/performance.md from the results")
    known, rest = p.parse_known_args(argv)
    if not (known.suite or known.write_docs):
        sys.path.insert(0, str(ROOT / "src"))
        from g2g.cli import main as g2g_main
        return g2g_main(["bench", *rest])
    if known.suite:
        run_suite(known.device, known.only)
    if known.write_docs:
        print(f"wrote {write_docs()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
