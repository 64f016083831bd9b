"""benchmarks/fonts.py and benchmarks/validation.py: the method table and the long-weight zeroing, the docs
generated from constructed results (targets, sentences, ranking), and a one-step fonts run on matplotlib's
DejaVu and STIX fonts, reused by the benchmark that then writes the doc and its pictures."""
import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from helpers import copy_test_fonts
from g2g.configs import load_preset, preset_names
from g2g.data import fonts as font_data
from g2g.hparams import LossWeights

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fonts  # noqa: E402
import validation  # noqa: E402

LONG = {f.name for f in fields(LossWeights) if "long" in f.metadata.get("needs", ())}


def _without_long(preset: str) -> LossWeights:
    """The preset's loss weights with the no-long zeroing applied."""
    loss = dict(load_preset(preset)["model"].get("loss") or {})
    loss.update({w: 0.0 for w in fonts.long_weights(preset)})
    return LossWeights.of(loss)


def test_long_weights_are_every_active_weight_tagged_long(monkeypatch):
    assert fonts.long_weights("g2g") == {"lambda_long": 1.0, "lambda_rerender": 1.0}
    assert fonts.long_weights("funit2funit") == {"lambda_long": 0.01, "lambda_fm_long": 0.1,
                                                 "lambda_fm_mixed_long": 0.1}
    for preset in preset_names():  # whatever the preset sets, nothing that needs the long pass is left on
        assert set(fonts.long_weights(preset)) <= LONG
        assert not _without_long(preset).needs_long, preset
    monkeypatch.setitem(fonts.METHODS, "general-no-long", {**fonts.METHODS["general-no-long"], "preset": "g2g"})
    assert fonts.method_overrides("general-no-long") == ["--model.loss.lambda_long", "0",
                                                         "--model.loss.lambda_rerender", "0"]


def test_methods_need_no_downloaded_weights_and_train_from_scratch():
    assert set(fonts.DEFAULT_METHODS) == set(fonts.METHODS)
    cyclefunit = fonts.method_overrides("cyclefunit")
    assert cyclefunit == ["--model.loss.lambda_identity", "0", "--model.frozen.perceptual", "none"]
    assert fonts.method_overrides("funit2funit") == ["--model.init_from", "null"]
    assert fonts.method_overrides("naive") == []
    table = fonts.method_table(["naive", "cyclefunit"])
    assert table["cyclefunit"]["preset"] == "cyclefunit" and "download" in table["cyclefunit"]["change"]


# ---- the fonts doc from constructed results ----

def _row(psnr, ssim, kept, font, copy) -> dict:
    return {"psnr": psnr, "ssim": ssim, "character_kept": kept, "font_transferred": font, "copy_through": copy}


BASE = {"copy x1": _row(12.0, 0.50, 0.99, 0.02, 1.0), "mean glyph": _row(13.0, 0.55, 0.98, 0.02, 0.0),
        "retrieval 1-shot": _row(13.5, 0.60, 0.99, 0.20, 0.0), "retrieval 8-shot": _row(14.0, 0.62, 0.99, 0.30, 0.0)}


def _results(tmp_path) -> dict:
    """good: meets the floor and the goal on held-out fonts; copier: copies x1."""
    good = {1: _row(15.0, 0.7, 0.97, 0.45, 0.01), 8: _row(16.5, 0.75, 0.98, 0.55, 0.0)}
    copier = {1: _row(12.0, 0.5, 0.99, 0.02, 0.97), 8: _row(12.0, 0.5, 0.99, 0.02, 0.97)}
    runs = []
    for method, rows in (("good", good), ("copier", copier)):
        for seed in (0, 1):
            scores = {split: {"rows": {f"model {k}-shot": {key: v + 0.001 * seed for key, v in r.items()}
                                       for k, r in rows.items()}} for split in fonts.SPLITS}
            runs.append({"method": method, "seed": seed, "steps": 100 + seed, "train_seconds": 60.0,
                         "model": str(tmp_path / "absent.safetensors"), "scores": scores,
                         "collapse": {"collapsed": method == "copier",
                                      "verdict": "collapse: x; advice" if method == "copier" else "no collapse: y"}})
    judges = {str(s): {"census": "6 fonts, 0 skipped", "scores": {
        **{split: {"rows": BASE} for split in fonts.SPLITS},
        "judges": {"accuracy": {"character": 0.9, "training fonts": 0.8, "held-out fonts": 0.7}}}} for s in (0, 1)}
    return {"command": "python benchmarks/fonts.py", "out_dir": str(tmp_path), "root": "/fonts", "size": 32,
            "budget_s": 60, "threads": 1, "pairs": 100, "judge_steps": 10, "seeds": [0, 1], "overrides": [],
            "methods": ["good", "copier"], "judges": judges, "runs": runs,
            "method_table": {m: {"preset": m, "change": "as it is", "overrides": []} for m in ("good", "copier")}}


def test_fonts_targets_and_sentences_come_from_the_numbers(tmp_path):
    results = _results(tmp_path)
    table, checks = fonts.split_table(results, "held-out fonts")
    assert checks["good"] == ([], [])
    floor, goal = checks["copier"]
    assert any("copy-through 97.0 % > 5 %" in f for f in floor) and any("PSNR 12.00 ≤" in f for f in floor)
    assert any(g.startswith("font transferred 2.") and g.endswith("% < 50 %") for g in goal)
    assert "| good 8-shot | 16.50 (16.50, 16.50) |" in table and "| retrieval 8-shot | 14.00 (14.00, 14.00) |" in table
    assert fonts.cell([1.0, 2.0, 3.0], 1, 1) == "2.0 ± 2.5" and fonts.cell([1.0, 2.0], 100, 0) == "150 (100, 200)"
    assert "copies x1 (copy-through 97 %)" in fonts.sentence(results, "copier")
    assert "collapses in 2 of 2 runs (collapse: x; advice)" in fonts.sentence(results, "copier")
    assert "beats every baseline on PSNR" in fonts.sentence(results, "good")
    assert "the difference on the same pairs, seed by seed: +2.50, +2.50 dB" in fonts.sentence(results, "good")


def test_the_character_floor_counts_the_answers_the_judge_reads():
    base = {b: {k: v for k, v in r.items()} for b, r in BASE.items()}
    row = _row(16.5, 0.75, 0.80, 0.55, 0.0)   # the judge misreads a fifth of the answers themselves
    assert fonts.targets({**row, "character_kept_readable": 0.97}, base) == ([], [])
    floor, _ = fonts.targets({**row, "character_kept_readable": 0.90}, base)
    assert floor == ["character kept (readable answers) 90.0 % < 95 %"]
    floor, _ = fonts.targets(row, base)   # results without the column: every pair
    assert floor == ["character kept 80.0 % < 95 %"]


def test_fonts_doc_puts_held_out_fonts_first(tmp_path):
    text = fonts.write_docs(_results(tmp_path), tmp_path / "docs").read_text()
    assert text.index("## Held-out fonts") < text.index("## Training fonts")
    assert "Meets the floor on held-out fonts: good." in text and "Meets the goal on held-out fonts: good." in text
    assert "No pictures: no model file" in text and "$" not in text
    assert text.startswith("# Fonts: the approaches on real glyphs, 60 s of training a run\n")
    text = fonts.write_docs({**_results(tmp_path), "threads": 2}, tmp_path / "docs").read_text()
    assert text.startswith("# Fonts: the approaches on real glyphs, 60 s of training a run, 2 CPU threads each\n")
    assert "on 2 CPU thread(s) per run" in text


def test_a_run_that_fails_leaves_the_earlier_run_as_it_was(tmp_path):
    here = tmp_path / "general" / "seed0"
    (here / "snapshots").mkdir(parents=True)
    (here / "snapshots" / "step9.safetensors").write_bytes(b"model")
    (here / "run.json").write_text('{"steps": 9}')
    with pytest.raises(ValueError, match="unrecognized arguments: --no-such-option"):
        fonts.train_staged(["--no-such-option", "1"], here, 60)
    assert (here / "run.json").read_text() == '{"steps": 9}'
    assert (here / "snapshots" / "step9.safetensors").read_bytes() == b"model"


def test_runs_of_older_code_are_reused_only_when_asked_and_the_doc_says_so(tmp_path, capsys):
    settings = {"code": "new", "budget_s": 600}
    path = tmp_path / "run.json"
    record = {"method": "naive", "seed": 0, "settings": {"code": "old", "budget_s": 600}}
    path.write_text(json.dumps(record))
    assert fonts.reusable(path, settings) is None
    assert fonts.reusable(path, settings, older=True) == record
    assert fonts.reusable(path, {**settings, "budget_s": 60}, older=True) is None   # other settings still count
    fresh = {"method": "general", "seed": 0, "settings": {"code": "g", "budget_s": 600}}
    codes = {"naive": "new", "general": "g"}
    assert fonts.older_words([fresh], codes, "method") == ""
    assert fonts.older_words([fresh, record], codes, "method") == (
        "\n1 of the 2 runs (naive) were trained with another version of the code and reused (`--reuse-older`): "
        "the same settings otherwise; each run's record holds the code digest it was trained with (settings).\n")
    assert fonts.parse(["--reuse-older", "naive", "cyclefunit"]).reuse_older == ["naive", "cyclefunit"]
    with pytest.raises(SystemExit):
        validation.parse(["--presets", "general", "--reuse-older", "g2g"])
    assert "--reuse-older g2g: not among --presets general" in capsys.readouterr().err


def test_stray_arguments_are_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        fonts.parse(["--seeds", "0", "1", "--", "--data.batch_size", "8"])
    assert "unexpected argument(s) 1: `g2g train` options go after --; seeds are comma-separated" in capsys.readouterr().err
    assert fonts.parse(["--seeds", "0,1", "--", "--data.batch_size", "8"]).overrides == ["--data.batch_size", "8"]


def test_a_named_doc_is_a_page_of_its_own_with_its_own_pictures(tmp_path, capsys):
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps({**_results(tmp_path), "doc_name": "fonts-60s"}))
    docs = tmp_path / "docs"
    assert fonts.main(["--from-json", str(saved), "--write-docs", "--docs-dir", str(docs)]) == 0
    text = (docs / "fonts-60s.md").read_text()   # the name saved with the results
    assert "![swaps](fonts-60s_swaps.png)" in text and "![grid](fonts-60s_grid.png)" in text
    assert not (docs / "fonts.md").exists()
    assert fonts.main(["--from-json", str(saved), "--write-docs", "--docs-dir", str(docs), "--doc-name", "other"]) == 0
    assert (docs / "other.md").is_file()    # the option overrides the saved name
    (docs / "design.md").write_text("# Design\n")
    text = (docs / "other.md").read_text()  # pages of this benchmark link each other; other docs are not linked
    assert "\nOther pages of this benchmark: [fonts-60s.md](fonts-60s.md) (60 s of training a run).\n" in text
    assert "other.md](" not in text and "design.md" not in text
    with pytest.raises(SystemExit):
        fonts.parse(["--doc-name", "../fonts"])
    assert "--doc-name '../fonts': use letters, digits, - and _ only" in capsys.readouterr().err


# ---- the validation doc from constructed results ----

def _validation_results() -> dict:
    runs = []
    for dataset, psnr in (("scenes", {"a": 18.0, "b": 20.0}), ("digits", {"a": None, "b": None})):
        for preset in ("a", "b"):
            m = {"class_transfer": 0.5 if preset == "a" else 0.4, "copy_through": 0.1, "short_psnr": 20.0,
                 "steps": 10, "class_chance": 0.1}
            if psnr[preset] is not None:
                m.update(swap_psnr=psnr[preset], flat_psnr=12.0)
            collapsed = dataset == "scenes" and preset == "b"
            runs.append({"preset": preset, "dataset": dataset, "seed": 0, "metrics": m,
                         "collapse": {"collapsed": collapsed, "verdict": "collapse: z" if collapsed else "no collapse"}})
    return {"command": "python benchmarks/validation.py", "out_dir": "/out", "size": 32, "budget_s": 60,
            "threads": 1, "seeds": [0], "overrides": [], "classifier_steps": 10, "presets": ["a", "b"],
            "datasets": ["scenes", "digits"], "eval": {"n_pairs": 500}, "runs": runs}


def test_validation_ranks_collapse_last_and_writes_the_table(tmp_path):
    results = _validation_results()
    order, _ = validation.ranking(results)  # b has the higher PSNR on scenes but collapsed there
    assert order == [("a", 1.0), ("b", 2.0)]
    text = validation.write_docs(results, tmp_path).read_text()
    assert "**Best across all datasets: a**" in text
    assert "| scenes | *flat image* | 12.00 | 10.0 (chance) |" in text
    assert "| digits (tuned on) | a | – | 50.0 |" in text and "$" not in text


def test_validation_metrics_read_the_held_out_classes():
    split = {"short_reconstruction": {"psnr": 20.0}, "reassembly": {"ratio": 1.0},
             "copy_through": {"true_render": {"rate": 0.25}, "reconstruction": {"rate": 0.5}}}
    held = {**split, "swap": {"psnr": 17.0, "baseline_flat_psnr": 11.0, "baseline_copy_content_source_psnr": 9.0},
            "class_transfer": {"accuracy": 0.6, "chance": 0.2}, "copy_through": {"true_render": {"rate": 0.05}}}
    m = validation.metrics({"seen_classes": split, "heldout_classes": held})
    assert m == {"short_psnr": 20.0, "copy_through": 0.05, "swap_psnr": 17.0, "flat_psnr": 11.0,
                 "class_transfer": 0.6, "class_chance": 0.2}


# ---- one tiny fonts run, end to end ----

def test_one_step_run_is_scored_reused_and_documented(tmp_path, monkeypatch):
    root = tmp_path / "fonts"
    root.mkdir()
    copy_test_fonts(root)
    monkeypatch.setitem(font_data.JUDGE, "steps", 5)          # the readability rule's judge, cut short …
    monkeypatch.setattr(font_data, "READ_THRESHOLD", 0.0)     # … and every font kept
    argv = ["--root", str(root), "--methods", "naive", "--seeds", "0", "--budget", "60", "--pairs", "16",
            "--judge-steps", "5", "--out-dir", str(tmp_path / "out"), "--write-docs", "--docs-dir",
            str(tmp_path / "docs"), "--", "--trainer.max_steps", "1", "--data.batch_size", "4",
            "--model.generator.nf", "4", "--model.generator.mlp_dim", "16", "--model.generator.content_channels", "8",
            "--model.generator.class_dim", "8"]  # a tiny generator
    args = fonts.parse(argv)
    fonts.fit_judges(args, 0)       # what the benchmark's processes do, here in this one
    record = fonts.run_one("naive", 0, args)
    assert record["steps"] == 1 and set(record["collapse"]) == {"collapsed", "verdict"}
    rows = record["scores"]["held-out fonts"]["rows"]
    assert set(rows) == {"model 1-shot", "model 8-shot"} and 0 <= rows["model 8-shot"]["copy_through"] <= 1
    assert fonts.main(argv) == 0    # everything reused: no process started
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["runs"] == [record] and "retrieval 8-shot" in results["judges"]["0"]["scores"]["held-out fonts"][
        "rows"]
    text = (tmp_path / "docs" / "fonts.md").read_text()
    assert "Pictures from naive, seed 0" in text and "| naive 8-shot |" in text
    kept = record["scores"]["held-out fonts"]["redrawn"]["character_kept"]
    assert f"(redrawn from its own codes, {100 * kept:.0f} %)" in text
    assert (tmp_path / "docs" / "fonts_swaps.png").stat().st_size > 0
    assert (tmp_path / "docs" / "fonts_grid.png").stat().st_size > 0
    # --rescore: the same model scored again, its training record kept, the record and the doc say so
    again = fonts.rescore_one("naive", 0, fonts.parse([*argv[:argv.index("--")], "--rescore", *argv[argv.index("--"):]]))
    timeless = lambda scores: {k: v for k, v in scores.items() if k != "runtime_s"}  # noqa: E731
    assert again["rescored"]["code"] == fonts.code_digest(["naive"])
    assert timeless(again["scores"]) == timeless(record["scores"])
    assert {k: again[k] for k in ("settings", "steps", "train_seconds", "model")} == {
        k: record[k] for k in ("settings", "steps", "train_seconds", "model")}
    fonts.write_docs({**results, "runs": [again]}, tmp_path / "docs")
    assert "\n\n1 of the 1 run were scored again without training (`--rescore`)" in (
        tmp_path / "docs" / "fonts.md").read_text()
    with pytest.raises(fonts.BenchmarkError, match="general seed 0 has no finished run"):
        fonts.rescorable(tmp_path / "out" / "general" / "seed0" / "run.json", "general", 0)


def test_one_step_validation_run_on_scenes(tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "EVAL", {**validation.EVAL, "n_pairs": 64, "n_probe": 200})  # lighter still
    argv = ["--presets", "g2g", "--datasets", "scenes", "--budget", "60", "--classifier-steps", "5",
            "--out-dir", str(tmp_path / "out"), "--", "--trainer.max_steps", "1"]
    args = validation.parse(argv)
    validation.train_judge(args.out_dir, "scenes", args.size, 0, args.classifier_steps)  # as its process does
    record = validation.run_one("g2g", "scenes", 0, args)
    assert record["steps"] == 1 and {"swap_psnr", "flat_psnr", "class_transfer", "copy_through"} <= set(
        record["metrics"])
    assert validation.main([*argv[:-3], "--write-docs", "--docs-dir", str(tmp_path / "docs"), *argv[-3:]]) == 0
    text = (tmp_path / "docs" / "validation.md").read_text()
    assert "| scenes | g2g |" in text and "**Best across all datasets: g2g" in text
