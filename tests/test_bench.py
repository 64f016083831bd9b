"""`g2g bench` (the step; the loader with --data DIR) and the generated performance table (no timings are
asserted: only what is reported)."""
import json
import sys
from pathlib import Path

import pytest

from g2g.bench import RESULT_FIELDS
from g2g.bench_data import DATA_RESULT_FIELDS
from g2g.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_step  # noqa: E402
import make_fake_dataset  # noqa: E402


def test_bench_writes_json_and_one_line_summary(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "--preset", "g2g", "--size", "16", "--batch", "4", "--steps", "2", "--warmup", "1",
                 "--set", "model.generator.nf=4", "--out", str(out), "--profile", str(tmp_path / "prof")]) == 0
    r = json.loads(out.read_text())
    assert set(RESULT_FIELDS) <= set(r)
    assert r["steps"] == 2 and r["image_size"] == 16 and r["batch_images"] == 4 and r["batch_pairs"] == 2 and r["precision"] == "32-true"
    assert r["gflop_per_step"] > 0 and r["achieved_gflops"] > 0 and r["matmul_peak_gflops"]["fp32"] > 0
    assert r["step_s_min"] <= r["step_s_median"] <= r["step_s_max"] and r["images_per_s"] > 0
    assert r["memory_kind"] == "process peak RSS" and r["random_frozen_weights"] == []
    assert r["machine"]["cores"] >= 1 and r["machine"]["cpu"]
    assert (tmp_path / "prof" / "trace.json").is_file() and (tmp_path / "prof" / "ops.txt").is_file()
    split = r["time_split"]  # the profiled steps' time in convolutions and matmuls
    assert split["matmul_s_per_step"] > 0
    assert split["matmul_gflops"] == pytest.approx(r["gflop_per_step"] / split["matmul_s_per_step"])
    assert split["matmul_share"] == pytest.approx(split["matmul_s_per_step"] / r["step_s_median"])
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("g2g 16 px")]
    assert len(summary) == 1 and "GFLOP/step" in summary[0] and "% of fp32 matmul peak" in summary[0]
    assert "profiled: convolutions and matmuls" in summary[0]

    docs = bench_step.write_docs(tmp_path, tmp_path / "performance.md")
    table, split_table = docs.read_text().split("## Where the step's time goes")
    rows = [line for line in table.splitlines() if line.startswith("| g2g | 16 | 4 (2) |")]
    assert len(rows) == 1 and r["machine"]["cpu"] in rows[0] and f"load {r['machine']['load_1min_start']}" in rows[0]
    split_rows = [line for line in split_table.splitlines() if line.startswith("| g2g | 16 | 4 (2) |")]
    assert len(split_rows) == 1 and f"{split['matmul_gflops']:,.1f}" in split_rows[0]


def test_matmul_seconds_counts_own_time_of_convolutions_and_matmuls():
    """Only the operations the FLOP counter counts, each by its self time (a convolution backward's bias sum
    and layout copies are its children, counted elsewhere); on CUDA the device's time, not the host's."""
    from types import SimpleNamespace as E

    from g2g.bench_timing import matmul_seconds
    events = [E(key="aten::mkldnn_convolution", self_cpu_time_total=3e6, self_device_time_total=0),
              E(key="aten::convolution_backward", self_cpu_time_total=5e6, self_device_time_total=2e6),
              E(key="aten::cudnn_convolution", self_cpu_time_total=1e3, self_device_time_total=1e6),
              E(key="aten::addmm", self_cpu_time_total=1e6, self_device_time_total=5e5),
              E(key="aten::native_group_norm", self_cpu_time_total=7e6, self_device_time_total=4e6),
              E(key="aten::copy_", self_cpu_time_total=2e6, self_device_time_total=3e6),
              # a kernel launched by a convolution: its time is already the convolution's own
              E(key="void implicit_convolve_sgemm<float>", self_cpu_time_total=0, self_device_time_total=9e6)]
    assert matmul_seconds(events, "cpu") == pytest.approx(3 + 5 + 0.001 + 1)
    assert matmul_seconds(events, "cuda") == pytest.approx(2 + 1 + 0.5)


def test_bench_jsonl_out_appends_one_line_per_run(tmp_path):
    """A sweep (benchmarks/gpu_check.sh) collects its runs in one .jsonl file, one result per line."""
    out = tmp_path / "sweep.jsonl"
    for batch in ("2", "4"):
        assert main(["bench", "--size", "16", "--batch", batch, "--steps", "1", "--warmup", "0",
                     "--set", "model.generator.nf=4", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line)["batch_images"] for line in lines] == [2, 4]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--set", "model.optim.lr_g"], "--set takes KEY=VALUE"),
    (["--device", "cuda"], "no CUDA device"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--batch", "3"], "--batch counts images and a step takes pairs: give an even number"),
])
def test_bench_mistakes_are_one_line(argv, message, capsys):
    pytest.importorskip("torch")
    import torch
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "--size", "16", "--batch", "2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("g2g: error:") and message in err and "\n" not in err


def test_bench_compiled_step_runs(tmp_path):
    """`--compile` with the sprite preset: encoders are called at several batch sizes (dynamic shapes once
    broke affine_grid's backward), and the long reconstruction must be compiled in the warm-up."""
    out = tmp_path / "c.json"
    assert main(["bench", "--preset", "g2g", "--size", "16", "--batch", "4", "--steps", "1", "--warmup", "2",
                 "--compile", "--set", "model.generator.nf=4", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["compile"] is True and r["steps"] == 1 and r["gflop_per_step"] > 0


def test_suite_files_and_verdict_per_machine(tmp_path):
    assert bench_step.machine_slug("AMD EPYC 7B13 64-Core Processor") == "amd-epyc"
    assert bench_step.machine_slug("Intel(R) Xeon(R) Processor @ 2.50GHz") == "intel-xeon"
    assert bench_step.run_name("g2g", 64, 8, "cpu", ["--compile"], "amd-epyc") == "g2g-64px-b8-cpu-compiled-amd-epyc"

    def result(cpu, ratio, load, gflop=2600.0):
        return {"preset": "cyclefunit-id", "image_size": 224, "batch_images": 4, "batch_pairs": 2, "device": "cpu",
                "precision": "32-true", "compile": False, "steps": 3, "step_s_median": 1.0, "step_s_min": 1.0,
                "step_s_max": 1.0, "images_per_s": 4.0, "data_s_median": 0.0, "gflop_per_step": gflop,
                "achieved_gflops": 100 * ratio, "matmul_peak_gflops": {"fp32": 100.0}, "peak_ratio": ratio,
                "peak_memory_mb": 1.0, "random_frozen_weights": [],
                "machine": {"cpu": cpu, "torch_threads": 2, "torch": "x", "load_1min": load, "load_1min_start": load}}
    for name, r in {"a": result("CPU A", 0.73, 0.5), "b": result("CPU A", 0.60, 3.0),
                    "c": result("CPU B", 0.56, 1.0, gflop=4000.0)}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    text = bench_step.write_docs(tmp_path, tmp_path / "performance.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("- CPU")]
    assert len(lines) == 2  # one per machine, its least-loaded run
    assert "73 %" in lines[0] and "(meets ≥ 70 %)" in lines[0] and "(meets ≤ 3,700)" in lines[0]
    assert "56 %" in lines[1] and "(misses ≥ 70 %)" in lines[1] and "(misses ≤ 3,700)" in lines[1]


# ---- `g2g bench --data DIR`: the loader alone beside the step ----

def test_bench_data_folder_times_loader_per_worker_count_and_the_step(tmp_path, capsys):
    """A generated CelebA-layout folder: the loader with 0 and 1 workers, then the step fed by that folder."""
    root = tmp_path / "celeba"
    make_fake_dataset.generate(root, "celeba", n=100, workers=1)
    out = tmp_path / "r.json"
    assert main(["bench", "--size", "16", "--batch", "4", "--data", str(root), "--workers", "0,1",
                 "--loader-batches", "2", "--steps", "1", "--warmup", "1", "--step-data", "folder",
                 "--set", "model.generator.nf=4", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(DATA_RESULT_FIELDS) <= set(r)
    assert r["dataset"] == "celeba" and r["data"] == str(root) and r["train_images"] == 80 and r["batch_pairs"] == 2
    assert [x["workers"] for x in r["loader"]] == [0, 1] and [x["batches"] for x in r["loader"]] == [2, 2]
    for x in r["loader"]:  # every image of a batch counted: x1, x2 and one reference each (k_refs 1)
        assert x["pairs_per_s"] > 0 and x["images_per_pair"] == r["images_per_pair"] == 4
        assert x["images_per_s"] == pytest.approx(4 * x["pairs_per_s"])
    best = max(r["loader"], key=lambda x: x["pairs_per_s"])
    assert r["best_workers"] == best["workers"] and r["loader_pairs_per_s"] == best["pairs_per_s"]
    step = r["step"]  # the step's own result, fed by the folder's loader
    assert step["data"] == str(root) and step["steps"] == 1 and step["images_per_s"] > 0
    assert r["step_images_per_s"] == step["images_per_s"] and r["step_pairs_per_s"] == pytest.approx(step["images_per_s"] / 2)
    assert r["loader_over_step"] == pytest.approx(r["loader_pairs_per_s"] / r["step_pairs_per_s"])
    assert r["bound"] == ("loader" if r["loader_over_step"] < 1 else "step")
    assert r["verdict"].startswith(f"the {r['bound']} bounds training")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("g2g 16 px")]
    assert len(lines) == 1 and "loader with 0 / 1 workers" in lines[0] and r["verdict"] in lines[0]


def test_bench_data_folder_against_a_given_step_rate(tmp_path):
    """A class-folder layout, compared with a known step rate: nothing is trained."""
    root = tmp_path / "classes"
    make_fake_dataset.generate(root, "folder", n=60, classes=3, workers=1)
    out = tmp_path / "r.jsonl"
    assert main(["bench", "--size", "16", "--batch", "8", "--data", str(root), "--workers", "0",
                 "--loader-batches", "2", "--step-images-per-s", "535", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["dataset"] == "folder" and r["step"] is None and r["step_source"] == "given"
    assert r["step_pairs_per_s"] == 267.5 and r["loader"][0]["pairs_per_s"] > 0 and r["best_workers"] == 0
    assert "267.5 pairs/s the step consumes (1,070 loader images/s at 4 images per pair)" in r["verdict"]


def test_dataset_of_a_folder_from_its_layout(tmp_path):
    from g2g.bench_data import dataset_of, default_workers
    (tmp_path / "a" / "Eval").mkdir(parents=True)
    (tmp_path / "a" / "Eval" / "list_eval_partition.txt").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "animals_list_train.txt").write_text("")
    assert [dataset_of(tmp_path / n) for n in "ab"] == ["celeba", "animals"] and dataset_of(tmp_path) == "folder"
    assert default_workers()[:3] == [0, 1, 2]


@pytest.mark.parametrize("argv, message", [
    (["--data", "no/such/folder"], "--data must be 'random', 'preset' or a dataset folder"),
    (["--workers", "0,1"], "give a dataset folder with --data DIR"),
    (["--data", "preset", "--step-images-per-s", "535"], "give a dataset folder with --data DIR"),
    (["--data", ".", "--step-images-per-s", "0"], "--step-images-per-s positive"),
])
def test_bench_data_mistakes_are_one_line(argv, message, capsys):
    assert main(["bench", "--size", "16", "--batch", "2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("g2g: error:") and message in err and "\n" not in err


def test_bench_workers_are_counts(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--workers", "a,b"])
    assert "worker counts separated by commas (e.g. 0,1,2), not 'a,b'" in capsys.readouterr().err
