"""docs/robustness.md: runs every bad-input case of tests/robustness_cases.py through `g2g.cli.main`, as
tests/test_robustness.py does, and writes the table of what each case gets into the template
benchmarks/templates/robustness.md. Nothing is written unless every case passes.

    python benchmarks/robustness.py                  # writes docs/robustness.md
    python benchmarks/robustness.py --out FILE       # elsewhere

Everything the cases need is made in a temporary folder (a tiny 2-step training run included) and
removed at the end; messages show that folder as `…`. Takes about a minute on one CPU thread.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from doc_template import block, render  # noqa: E402

HEADER = ["| # | where | bad input | exit | what the user gets |", "|---|---|---|---|---|"]


def row(n: int, case, rc: int, message: str) -> str:
    """One table row: an error line as code, a handled case as text."""
    message = message.replace("|", "\\|")
    shown = f"`` {message} ``" if rc else message
    return f"| {n} | {case.area} | {case.what} | {rc} | {shown} |"


def run_all(folder: Path) -> list[str]:
    """Every case run in folder; the table's rows. Raises CaseFailed at the first case that fails."""
    from helpers import fit_tiny
    from robustness_cases import CASES, build_material, check, run_case, tmp_free

    torch.manual_seed(0)  # the shared tiny run of the test suite (conftest.tiny_run)
    ckpt = folder / "tiny_run" / "step2.ckpt"
    fit_tiny(ckpt.parent, max_steps=2, save_to=ckpt)
    material = build_material(folder / "robustness", ckpt)
    rows = []
    for n, case in enumerate(CASES, 1):
        outcome = run_case(case, material)
        message = check(case, material, outcome)
        rows.append(row(n, case, outcome.rc, tmp_free(message, material, ckpt.parent)))
        print(f"{n:3d} {case.id}: exit {outcome.rc}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "robustness.md",
                   help="the document to write (default: docs/robustness.md of this checkout)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in ("lightning.pytorch", "lightning.fabric"):  # their info lines are not about the cases
        logging.getLogger(name).setLevel(logging.WARNING)
    from robustness_cases import CaseFailed
    with tempfile.TemporaryDirectory(prefix="g2g-robustness-") as tmp:
        try:
            rows = run_all(Path(tmp))
        except CaseFailed as e:
            print(f"robustness: a case failed, {args.out} not written:\n{e}", file=sys.stderr)
            return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render("robustness.md", table=block(HEADER + rows)))
    print(f"wrote {args.out} ({len(rows)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
