"""benchmarks/quality.py: the answer to its question and the tables it generates (from constructed
results with known intervals), and one tiny end-to-end run."""
import json
import sys
from pathlib import Path

import pytest

from g2g.evaluation.intervals import seed_ci

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import quality  # noqa: E402
import quality_doc  # noqa: E402

# a generator small enough to train for seconds (the sizes of helpers.TINY, as `g2g train` options)
TINY_OPTIONS = ["--data.image_size", "16", "--model.generator.nf", "4", "--model.generator.n_downs_content", "2",
                "--model.generator.n_downs_class", "2", "--model.generator.class_dim", "8",
                "--model.generator.mlp_dim", "16"]


def _run(variant, dataset, seed, **metrics):
    """A run record as quality.py writes it, with the given table metrics (and fixed references)."""
    refs = {"flat_psnr": 14.9, "copy_psnr": 13.2, "class_chance": 0.04, "probe_chance": 0.05}
    curve = [{"step": 0, "seconds": 0.0, "swap_psnr": 8.0, "class_transfer": 0.04},
             {"step": 50, "seconds": 10.0, "swap_psnr": metrics.get("swap_psnr", 15.0),
              "class_transfer": metrics.get("class_transfer", 0.5)}]
    return {"variant": variant, "dataset": dataset, "seed": seed, "metrics": {**refs, **metrics, "steps": 50},
            "curve": curve, "grid": None, "train_seconds": 10.0, "eval_seconds": 5.0, "wall_seconds": 25.0,
            "load_1min_start": 1.0, "load_1min_end": 1.5,
            "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.x", "torch_threads": 1, "code": "abc"}}


def _runs(with_long: dict[str, list[float]], without: dict[str, list[float]], dataset="shapes") -> list[dict]:
    """One record per seed: with_long (the preset g2g, which has the long reconstruction) = {"swap_psnr": [seed 0,
    seed 1, seed 2], ...}, likewise without (variant no-long)."""
    runs = []
    for variant, table in (("g2g", with_long), ("no-long", without)):
        for seed in range(len(next(iter(table.values())))):
            runs.append(_run(variant, dataset, seed, **{k: v[seed] for k, v in table.items()}))
    return runs


def test_interval_cells_are_mean_and_half_width_over_seeds():
    v = [16.0, 16.5, 17.2]
    low, high = seed_ci(v)
    assert quality_doc.cell(v, "swap_psnr") == f"{sum(v) / 3:.2f} ± {(high - low) / 2:.2f}"
    assert quality_doc.cell([0.5], "class_transfer") == "50.0"   # one seed: no interval
    assert quality_doc.cell([], "probe") == "–"


def test_overlapping_intervals_mean_no_measurable_difference():
    runs = _runs({"swap_psnr": [16.0, 16.4, 16.8], "class_transfer": [0.50, 0.55, 0.60]},
                 {"swap_psnr": [16.2, 16.6, 17.0], "class_transfer": [0.52, 0.58, 0.61]})
    verdict, sentence = quality_doc.answer(runs, budget_s=300)
    assert verdict == "no measurable difference at this budget"
    assert sentence.startswith("No measurable difference at this budget (300 s of training per run)")
    assert "swap PSNR on shapes (16.40 ± " in sentence and "class transfer on shapes" in sentence


def test_separate_intervals_say_helps_or_hurts():
    better = {"swap_psnr": [17.0, 17.1, 17.2], "probe": [0.10, 0.11, 0.12]}
    worse = {"swap_psnr": [16.0, 16.1, 16.2], "probe": [0.30, 0.31, 0.32]}
    verdict, sentence = quality_doc.answer(_runs(better, worse), budget_s=60)
    assert verdict == "helps"    # higher swap PSNR and a content code that tells less about the class
    assert "is better than `no-long` (without it) on swap PSNR on shapes (17.10 ± " in sentence
    assert "class from the content code on shapes (11.0 ± " in sentence
    verdict, sentence = quality_doc.answer(_runs(worse, better), budget_s=60)
    assert verdict == "hurts" and "is worse than `no-long` (without it)" in sentence


def test_mixed_and_undetermined_answers():
    runs = _runs({"swap_psnr": [17.0, 17.1, 17.2], "class_transfer": [0.1, 0.11, 0.12]},
                 {"swap_psnr": [16.0, 16.1, 16.2], "class_transfer": [0.5, 0.51, 0.52]})
    verdict, sentence = quality_doc.answer(runs, budget_s=60)
    assert verdict == "mixed" and "but worse on class transfer on shapes" in sentence
    one_seed = _runs({"swap_psnr": [17.0]}, {"swap_psnr": [16.0]})
    assert quality_doc.answer(one_seed, budget_s=60)[0] == "undetermined"
    assert quality_doc.answer([r for r in runs if r["variant"] == "g2g"], budget_s=60)[0] == "undetermined"


def test_docs_from_constructed_results(tmp_path):
    runs = _runs({"swap_psnr": [17.0, 17.1, 17.2], "class_transfer": [0.5, 0.6, 0.7], "probe": [0.1, 0.1, 0.2]},
                 {"swap_psnr": [16.0, 16.1, 16.2], "class_transfer": [0.5, 0.6, 0.7], "probe": [0.1, 0.2, 0.2]})
    runs.append({"variant": "K=4", "dataset": "shapes", "seed": 0, "error": "exit status 1; see log.txt"})
    results = {"runs": runs, "budget_s": 120, "seeds": 3, "jobs": 2, "datasets": ["shapes", "digits"],
               "variants": ["g2g", "no-long", "K=4"], "overrides": [], "started": "2026-01-01T00:00:00",
               "finished": "2026-01-01T01:00:00", "load_1min_start": 0.5, "load_1min_end": 0.7,
               "command": "python benchmarks/quality.py --budget 120", "out_dir": "outputs/quality",
               "eval": quality.EVAL, "curve_pairs": 500, "variant_table": quality.variant_table(["g2g", "no-long", "K=4"])}
    doc = quality_doc.write_docs(results, tmp_path, tmp_path).read_text()
    assert "**Does the G2G cross-training cycle (long reconstruction) help disentanglement?** It helps" in doc
    assert "Test CPU, 2 cores" in doc and "120 s of training per run" in doc and "2 run(s) in parallel" in doc
    assert "| `g2g` | 17.10 ± " in doc and "| `no-long` | 16.10 ± " in doc and "| `K=4` | – |" in doc
    assert "| reference | flat 14.90, copy 13.20 | chance 4.0 | chance 5.0 |" in doc
    assert "Failed runs (left out of the table): shapes K=4 seed 0" in doc
    assert "## digits" not in doc and (tmp_path / "results_curve_shapes.png").stat().st_size > 0
    assert "--model.loss.lambda_long 0 --model.loss.lambda_rerender 0" in doc and "model.loss.lambda_content_probe 0" not in doc


def test_time_budget_and_file_names():
    assert quality.max_time(3725) == "00:01:02:05" and quality.max_time(90061) == "01:01:01:01"
    assert [quality.slug(v) for v in quality.VARIANTS] == [
        "g2g", "no-long", "no-rerender", "long-early", "unsupervised", "no-palette", "sorted-layout", "figure-layout", "mean-pool",
        "weak-moments", "no-centre", "no-moments", "no-equivariance", "no-refine", "no-probe", "no-class-ce", "adain", "k4", "adv"]
    assert set(quality.DEFAULT_VARIANTS) <= set(quality.VARIANTS)
    assert quality.image_size(["--data.image_size", "16"]) == 16 and quality.image_size(["--data.image_size=24"]) == 24
    assert quality.image_size([]) == 32


def test_arguments_before_the_separator_never_reach_g2g_train(capsys):
    assert quality.stray_arguments(["--seeds", "2", "--", "--data.batch_size", "8"], ["--data.batch_size", "8"]) is None
    assert quality.stray_arguments(["--seeds", "2"], []) is None
    with pytest.raises(SystemExit):
        quality.main(["--seeds", "2", "3", "--", "--data.batch_size", "8"])
    assert "unexpected argument(s) 3: `g2g train` options go after --" in capsys.readouterr().err


def test_a_run_is_not_reused_after_the_code_changes(tmp_path, monkeypatch):
    module = tmp_path / "src" / "g2g" / "networks" / "net.py"
    module.parent.mkdir(parents=True)
    module.write_text("WIDTH = 16\n")
    monkeypatch.setattr(quality, "ROOT", tmp_path)
    before = quality.code_digest()
    assert quality.code_digest() == before                    # stable while nothing changes
    module.write_text("WIDTH = 32\n")
    assert quality.code_digest() != before                    # a source edit makes saved runs stale
    args = type("Args", (), {"budget": 60, "threads": 1, "points": 4, "classifier_steps": 3300, "overrides": []})
    assert quality.run_settings(args, "g2g")["code"] == quality.code_digest()


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(tmp_path, capsys):
    """A step limit (--trainer.max_steps) ends the run long before its time budget, so the run is the same
    on any machine: the curve has its start and its end."""
    argv = ["--variants", "g2g", "--datasets", "shapes", "--seeds", "1", "--budget", "600", "--points", "2",
            "--classifier-steps", "200", "--out-dir", str(tmp_path / "runs"), "--write-docs",
            "--docs-dir", str(tmp_path / "docs"), "--", *TINY_OPTIONS, "--trainer.max_steps", "6"]
    assert quality.main(argv) == 0
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    [run] = results["runs"]
    assert run["variant"] == "g2g" and run["dataset"] == "shapes" and run["steps"] == 6
    assert [p["step"] for p in run["curve"]] == [0, 6]   # start and end (the step limit came first)
    assert 0 < run["train_seconds"] < run["wall_seconds"]
    for key in ("swap_psnr", "swap_psnr_heldout", "class_transfer", "class_transfer_heldout", "probe", "dci",
                "ratio", "short_psnr", "flat_psnr", "copy_psnr"):
        assert key in run["metrics"], key
    doc = (tmp_path / "docs" / "results.md").read_text()
    assert "| `g2g` | " in doc and "Not answered by these results" in doc
    for png in ("results_curve_shapes.png", "results_grid_shapes_g2g.png"):
        assert png in doc and (tmp_path / "docs" / png).stat().st_size > 0
    # the same command again reuses the run; --from-json rewrites the doc without training
    assert quality.main(argv) == 0
    assert "0 runs to do, 1 reused" in capsys.readouterr().out
    doc = (tmp_path / "docs" / "results.md").read_text()
    (tmp_path / "docs" / "results.md").unlink()
    assert quality.main(["--from-json", str(tmp_path / "runs" / "results.json"),
                         "--docs-dir", str(tmp_path / "docs")]) == 0
    assert (tmp_path / "docs" / "results.md").read_text() == doc
