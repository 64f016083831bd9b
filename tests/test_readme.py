"""Every command in the README runs as written.

The commands are read from the README's ```bash / ```sh / ```console blocks (comments dropped, `\\` lines
joined, `$ ` prompts of console blocks stripped) and run in order, in-process through `g2g.cli.main`, in a
temporary working folder whose HOME it also is, so relative paths and `~` land there and nothing is written
into the repository. The files a user would have are tiny fakes made there under the names the README uses:
`DIR/<class>/*.png`, `A.png`, `B.png`, `A.jpg`, `B.jpg`, `~/data/CelebA`, `FUNIT/datasets`,
`animal149_gen.pt` (NVIDIA's FUNIT layout), `resnet50_ft_dag.pth` (VGGFace2) and VGG16 in the torch hub
cache, all with random weights or pixels. Long commands get a tiny budget:

- `g2g train`: 2 steps on the CPU; the report's GPU-sized presets also at 32 px, 2 pairs a step;
- `make demo`: the Makefile's demo command, trained for 2 steps;
- `g2g eval` (and the demo's evaluation): 64 test pairs, a short classifier run, one DCI fit;
- `g2g bench`: one timed step.

`SKIP` lists what does not run here, with the reason. Anything else must exit 0.
"""
from __future__ import annotations

import contextlib
import glob
import inspect
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"

# command prefix → why it does not run in this test
SKIP = {
    "make test": "it is this test suite",
    "g2g app ": "a server that runs until stopped; tests/test_app_browser.py drives it in Chromium",
    "make venv": "it installs packages (network); the suite runs in the environment it made",
    "make lint": "CI runs it on the whole checkout",
    "torchrun ": "several processes on several machines",
    "srun ": "a SLURM cluster",
    "g2g train --preset cyclefunit --data.root ~/data/CelebA --trainer.devices 4": "four GPUs",
}

TRAIN_BUDGET = ["--trainer.max_steps", "2", "--trainer.max_time", "null", "--trainer.accelerator", "cpu",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SMALL_DATA = {"--data.image_size": "32", "--data.batch_size": "2", "--data.num_workers": "0"}
EVAL_BUDGET = {"n_pairs": 64, "n_probe": 200, "mlp_probes": False, "dci_repeats": 1, "k_shots": (1,),
               "classifier_steps": 30, "classifier_seconds": 1.0}
BENCH_BUDGET = ["--steps", "1", "--warmup", "0"]


# --- reading the README -------------------------------------------------------------------------------

def readme_commands(text: str) -> list[str]:
    """The commands of the bash / sh / console code blocks, one string each, in order."""
    commands = []
    for lang, body in re.findall(r"^```(bash|sh|console)[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.strip()
            if lang == "console":
                if not line.startswith("$ "):
                    continue  # output shown in the block
                line = line[2:]
            words = shlex.split(line, comments=True)
            if words:
                commands.append(" ".join(words))
    return commands


def make_recipe(target: str) -> list[str]:
    """The shell lines of a Makefile target, with `$(BIN)/` dropped (the venv's g2g is this process)."""
    lines = MAKEFILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(BIN)/", ""))
    return recipe


def skip_reason(command: str) -> str | None:
    return next((why for prefix, why in SKIP.items() if command.startswith(prefix)), None)


# --- fake user files ------------------------------------------------------------------------------------

def _noise(rng, h: int, w: int, tint: int) -> Image.Image:
    """A textured image (flat ones are not what cameras give: FUNIT's instance norms divide by their spread)."""
    pixels = rng.integers(0, 256, (h, w, 3)).astype(np.int64)
    pixels[..., tint % 3] = (pixels[..., tint % 3] + 96) % 256
    return Image.fromarray(pixels.astype(np.uint8))


def make_user_files(root: Path) -> None:
    from g2g.data.shapes import ShapesDataset
    from g2g.networks.funit_checkpoint import FUNIT_ANIMALS, to_funit_state_dict
    from g2g.networks.generator import Generator, generator_config
    from g2g.networks.identity import IdentityNet
    from g2g.networks.perceptual import default_weights_path

    rng = np.random.default_rng(0)
    shapes = ShapesDataset("test", size=32, n=200, seed=0)

    def as_image(x: torch.Tensor) -> Image.Image:  # (3, H, W) in [-1, 1]
        return Image.fromarray(((x.permute(1, 2, 0) * 0.5 + 0.5) * 255).round().byte().numpy())

    other = int(torch.nonzero(shapes.labels != shapes.labels[0])[0])  # B: another class than A
    for name, i in (("A", 0), ("B", other)):
        as_image(shapes.images[i]).save(root / f"{name}.png")
        as_image(shapes.images[i]).resize((128, 128)).save(root / f"{name}.jpg")
    for c, label in enumerate(shapes.labels.unique()[:3].tolist()):  # DIR/<class>/*.png
        (root / "DIR" / f"class{c}").mkdir(parents=True)
        for k, image in enumerate(shapes.images[shapes.labels == label]):
            as_image(image).save(root / "DIR" / f"class{c}" / f"{k}.png")
    celeba = root / "data" / "CelebA"  # ~/data/CelebA: the aligned images and the two list files
    (celeba / "img_align_celeba").mkdir(parents=True)
    partition, identity = [], []
    for i in range(24):
        name = f"{i + 1:06d}.jpg"
        _noise(rng, 218, 178, i).save(celeba / "img_align_celeba" / name)
        partition.append(f"{name} {0 if i < 16 else 1 if i < 20 else 2}\n")
        identity.append(f"{name} {i % 6 + 1}\n")
    (celeba / "list_eval_partition.txt").write_text("".join(partition))
    (celeba / "identity_CelebA.txt").write_text("".join(identity))
    animals = root / "FUNIT" / "datasets"  # FUNIT's extracted Animal Faces crops and list files
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for k in range(6):
        for j in range(3):
            entry = f"n0{k:07d}/n0{k:07d}_{j}.JPEG_0_0_40_40.jpg"
            (animals / "animals" / entry).parent.mkdir(parents=True, exist_ok=True)
            _noise(rng, 40, 40, k).save(animals / "animals" / entry)
            lists["train" if k < 4 else "test"].append(entry)
    for split, entries in lists.items():
        (animals / f"animals_list_{split}.txt").write_text("\n".join(entries) + "\n")
    torch.manual_seed(0)
    state = to_funit_state_dict(Generator(generator_config(**FUNIT_ANIMALS)))
    torch.save({"gen": state, "gen_test": state}, root / "animal149_gen.pt", _use_new_zipfile_serialization=False)
    torch.save(IdentityNet().state_dict(), root / "resnet50_ft_dag.pth")  # the published names and shapes
    vgg = default_weights_path()  # under TORCH_HOME, set to the working folder
    vgg.parent.mkdir(parents=True)
    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128)]  # VGG16 features up to relu2_2
    torch.save({**{f"features.{i}.weight": torch.randn(o, c, 3, 3) * (2 / (9 * c)) ** 0.5 for i, c, o in convs},
                **{f"features.{i}.bias": torch.zeros(o) for i, _, o in convs}}, vgg)


# --- running a command ----------------------------------------------------------------------------------

def with_budget(argv: list[str]) -> list[str]:
    """The g2g arguments with the tiny budget of their subcommand appended."""
    if argv[0] == "train":
        extra = list(TRAIN_BUDGET)
        preset = argv[argv.index("--preset") + 1] if "--preset" in argv else None
        if preset not in (None, "g2g"):  # sized for a GPU
            for key, value in SMALL_DATA.items():
                if key not in argv:
                    extra += [key, value]
        return argv + extra
    if argv[0] == "demo":  # its `g2g train` options follow `--`
        return argv + ["--", *(f"{k}={v}" for k, v in zip(TRAIN_BUDGET[::2], TRAIN_BUDGET[1::2]))]
    if argv[0] == "bench":
        return argv + BENCH_BUDGET
    return argv


def small_eval(run_eval):
    """run_eval with the eval budget for the settings it takes."""
    params = inspect.signature(run_eval).parameters

    def run(*args, **kwargs):
        from g2g.evaluation.report import EvalSettings
        settings = set(inspect.signature(EvalSettings).parameters)
        for key, value in EVAL_BUDGET.items():
            if key in params or key in settings:
                kwargs[key] = value
        return run_eval(*args, **kwargs)
    return run


def run_g2g(words: list[str], cwd: Path) -> int:
    """One `g2g …` command line (a `> FILE` redirection allowed), in-process; returns its exit status."""
    from g2g.cli import main
    out = None
    if ">" in words:
        i = words.index(">")
        words, out = words[:i], words[i + 1]
    argv = []
    for w in words[1:]:
        w = os.path.expanduser(w)
        argv += sorted(glob.glob(w)) or [w] if any(ch in w for ch in "*?[") else [w]
    argv = with_budget(argv)
    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(cwd / out, "w"))))
        try:
            return main(argv)
        except SystemExit as e:  # --help and --print_config exit
            return 0 if e.code in (None, 0) else (e.code if isinstance(e.code, int) else 1)


def run_command(command: str, cwd: Path) -> int:
    for part in command.split(" && "):
        words = shlex.split(part)
        if words[0] == "make":
            recipe = make_recipe(words[1])
            assert len(recipe) == 1 and recipe[0].startswith("g2g "), f"make {words[1]}: {recipe}"
            words = shlex.split(recipe[0])
        assert words[0] == "g2g", f"not a g2g command, and not in SKIP: {part}"
        rc = run_g2g(words, cwd)
        if rc != 0:
            return rc
    return 0


def repo_state() -> set[str]:
    """What `git status` shows of the checkout, ignored files included (caches aside)."""
    lines = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return {line for line in lines if not re.search(r"__pycache__|\.pytest_cache|\.egg-info|^!! \.venv/", line)}


# --- tests ------------------------------------------------------------------------------------------

def test_readme_commands_are_found():
    commands = readme_commands(README.read_text())
    assert any(c.startswith("make demo") for c in commands)
    assert any(c.startswith("g2g train --preset g2g") for c in commands)
    assert all("\\" not in c for c in commands), "a continuation line was not joined"


def test_readme_parser_joins_lines_and_drops_comments_and_output():
    text = ("```bash\ng2g train --preset g2g \\\n    --data.dataset digits   # a comment\n# only a comment\n```\n"
            "```console\n$ g2g eval m.safetensors\nsome output\n```\n```python\nignored()\n```\n")
    assert readme_commands(text) == ["g2g train --preset g2g --data.dataset digits", "g2g eval m.safetensors"]


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch):
    import g2g.evaluation.report as report
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / ".cache" / "torch"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "run_eval", small_eval(report.run_eval))
    before = repo_state()
    make_user_files(tmp_path)
    failed = []
    for command in readme_commands(README.read_text()):
        why = skip_reason(command)
        if why is not None:
            print(f"skipped ({why}): {command}")
            continue
        start = time.monotonic()
        try:
            rc = run_command(command, tmp_path)
        except Exception as e:  # report every command, not only the first failure
            rc = f"{type(e).__name__}: {e}"
        print(f"{time.monotonic() - start:6.1f} s  exit {rc}  {command}")
        if rc != 0:
            failed.append(f"{command}\n    → {rc}")
    for big in ("animal149_gen.pt", "resnet50_ft_dag.pth"):  # 120 and 94 MB: not kept with pytest's last runs
        (tmp_path / big).unlink()
    assert not failed, "README commands that failed:\n" + "\n".join(failed)
    after = repo_state()
    assert after == before, f"README commands changed the checkout: {sorted(after ^ before)}"
    assert (tmp_path / "outputs" / "demo" / "model.safetensors").is_file()
    assert (tmp_path / "swapped" / "panel.png").is_file() and (tmp_path / "grid.png").is_file()
