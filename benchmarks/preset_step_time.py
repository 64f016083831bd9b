"""Seconds per training step of every preset at its own image size and batch, on this machine's CPU or
GPU: `g2g bench` once per preset, each in its own process (a preset that runs out of memory is reported
as such). Not a test: a 224 px cyclefunit step takes many seconds on a CPU.

`g2g bench` times the step alone: random batches of the preset's shapes, random weights in the published
layouts for frozen networks without weight files, every loss term on from the first step.

    python benchmarks/preset_step_time.py                                   # every preset, 1 timed step each
    python benchmarks/preset_step_time.py --presets cyclefunit-id --steps 3 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from g2g.configs import load_preset, preset_names  # noqa: E402


def bench_command(name: str, args: argparse.Namespace) -> list[str]:
    """`g2g bench` of a preset at its own image size and batch (`g2g bench --batch` counts images: 2 × pairs)."""
    data = load_preset(name)["data"]
    return [sys.executable, "-m", "g2g.cli", "bench", "--preset", name, "--size", str(data["image_size"]),
            "--batch", str(2 * data["batch_size"]), "--device", args.device, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--out", str(args.out)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=preset_names(), choices=preset_names())
    p.add_argument("--steps", type=int, default=1, help="timed steps per preset (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per run (OMP_NUM_THREADS)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", type=Path, default=Path("outputs/bench/preset_step_time.jsonl"),
                   help="one `g2g bench` result per line; replaced by each call (default: %(default)s)")
    args = p.parse_args(argv)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    args.out.unlink(missing_ok=True)
    failed = {}
    for name in args.presets:
        rc = subprocess.run(bench_command(name, args), env=env).returncode
        if rc:  # e.g. killed for memory (-9)
            failed[name] = rc
    results = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.is_file() else []
    print("\n| preset | px | batch (pairs) | s/step |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['preset']} | {r['image_size']} | {r['batch_images']} ({r['batch_pairs']}) "
              f"| {r['step_s_median']:.2f} |")
    for name, rc in failed.items():
        print(f"| {name} | | | exit status {rc} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
