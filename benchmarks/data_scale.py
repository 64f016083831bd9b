"""Data at scale: indexing time, loader throughput and `g2g eval` peak memory on full-size folders.

    python benchmarks/make_fake_dataset.py /data/celeba                  # 202,599 JPEGs, CelebA layout
    python benchmarks/make_fake_dataset.py /data/folder --layout folder  # ~100 classes
    python benchmarks/data_scale.py --celeba /data/celeba --folder /data/folder  # results/data/scale.json
    g2g bench --preset cyclefunit --size 128 --batch 16 --data /data/celeba --workers 0,1,2 \\
        --loader-batches 300 --step-images-per-s 535 --out benchmarks/results/data/loader.jsonl
    python benchmarks/bench_step.py --write-docs                          # docs/performance.md

Each measurement runs in a fresh Python process. Indexing: the training split's dataset built with an
empty index cache (cold), then again (cached); the page cache is warm both times (the files were just
written or read), as it is for any second run. Eval: `g2g eval` of an untrained `cyclefunit` generator at
224 px on the test split, with the resident memory of the process and of its worker processes sampled
every 0.1 s; `--old-tree` runs the same evaluation with another source tree's `g2g` (e.g. a checkout of
an earlier version) on `--old-celeba`, a smaller copy, because holding whole splits does not fit here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INDEX = """
import sys, time
from g2g.data.datamodule import make_dataset
t = time.perf_counter()
ds = make_dataset(sys.argv[1], "train", 128, sys.argv[2])
print(time.perf_counter() - t, len(ds))
"""
EXPORT = """
import sys
from g2g.configs import load_preset
from g2g.inference import export_generator
from g2g.networks.arch_config import config_from_dict
from g2g.networks.generator import Generator
config = load_preset("cyclefunit")["model"]["generator"]
config["image_size"] = int(sys.argv[2])
export_generator(Generator(config_from_dict(config)), sys.argv[1])
"""
EVAL = """
import sys
sys.path.insert(0, sys.argv[1])
from g2g.evaluation.report import run_eval
run_eval(sys.argv[2], data="celeba", root=sys.argv[3], out_dir=sys.argv[4], n_pairs=int(sys.argv[5]),
         classifier_steps=int(sys.argv[6]), n_probe=int(sys.argv[7]), networks={"lpips": None, "inception": None},
         mlp_probes=False, dci_repeats=1)
"""


def _python(code: str, *args: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def index_times(dataset: str, root: str) -> dict:
    """Seconds to build the training split's dataset (after the imports): cold (empty cache), then cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = {"G2G_CACHE_DIR": cache}
        cold, n = _python(INDEX, dataset, root, env=env).split()
        cached, _ = _python(INDEX, dataset, root, env=env).split()
    return {"dataset": dataset, "files": int(n), "cold_s": round(float(cold), 2), "cached_s": round(float(cached), 2)}


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (shared pages counted in each)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _own_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def eval_memory(tree: Path, model: Path, root: str, pairs: int, classifier_steps: int, probe: int) -> dict:
    """Peak resident memory of `g2g eval` (main process alone, and with its worker processes). A run that
    the kernel kills for want of memory reports the peak it reached."""
    with tempfile.TemporaryDirectory() as out, open(Path(out) / "stderr.txt", "w+") as stderr:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", EVAL, str(tree / "src"), str(model), root, out, str(pairs),
                                 str(classifier_steps), str(probe)], stderr=stderr, text=True)
        peak_main = peak_tree = 0
        while proc.poll() is None:
            try:
                peak_main, peak_tree = max(peak_main, _own_rss(proc.pid)), max(peak_tree, _tree_rss(proc.pid))
            except FileNotFoundError:
                break
            time.sleep(0.1)
        proc.wait()
        result = {"tree": str(tree), "root": root, "exit_status": proc.returncode}
        if proc.returncode == -9:  # the kernel's out-of-memory killer: the sampled peak is the measurement
            result["killed"] = "out of memory"
        elif proc.returncode:
            stderr.seek(0)
            raise RuntimeError(f"eval failed: {stderr.read()[-2000:]}")
        partition = Path(root) / "list_eval_partition.txt"
        test_images = sum(line.split()[1:] == ["2"] for line in partition.read_text().splitlines())
    return {**result, "test_images": test_images, "pairs": pairs,
            "probe_images": probe, "classifier_steps": classifier_steps, "peak_rss_gb": round(peak_main / 2**30, 2),
            "peak_rss_with_workers_gb": round(peak_tree / 2**30, 2), "wall_s": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--celeba", required=True, help="CelebA-layout folder (make_fake_dataset.py)")
    p.add_argument("--folder", default=None, help="labelled image folder (make_fake_dataset.py --layout folder)")
    p.add_argument("--size", type=int, default=224, help="eval image size (default: %(default)s)")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--probe-images", type=int, default=3000)
    p.add_argument("--classifier-steps", type=int, default=300)
    p.add_argument("--old-tree", default=None, help="another source tree to measure eval memory with")
    p.add_argument("--old-celeba", nargs="+", default=[],
                   help="the (smaller) CelebA-layout folders for --old-tree, one run each")
    p.add_argument("--skip", nargs="*", default=[], choices=["index", "eval", "old"])
    p.add_argument("--out", default="benchmarks/results/data/scale.json")
    a = p.parse_args(argv)
    out = Path(a.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    if "index" not in a.skip:
        result["index"] = [index_times("celeba", a.celeba)] + ([index_times("folder", a.folder)] if a.folder else [])
        print(json.dumps(result["index"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "cyclefunit.safetensors"
        _python(EXPORT, str(model), str(a.size))
        if "eval" not in a.skip:
            result["eval"] = eval_memory(ROOT, model, a.celeba, a.pairs, a.classifier_steps, a.probe_images)
            print(json.dumps(result["eval"]), flush=True)
        if a.old_tree and "old" not in a.skip:
            result["eval_old"] = []
            for root in a.old_celeba or [a.celeba]:
                result["eval_old"].append(eval_memory(Path(a.old_tree), model, root, a.pairs, a.classifier_steps,
                                                      a.probe_images))
                print(json.dumps(result["eval_old"][-1]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
