"""Crash safety: a training run killed with SIGKILL resumes bit-exactly; kills while files are
being written never leave a broken checkpoint, model or metrics file; NaN/Inf stops or skips cleanly."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import g2g
from helpers import write_train_config
from g2g import inference
from g2g.checkpoint import load_checkpoint
from g2g.cli import main
from g2g.module import G2GModule

SRC = Path(g2g.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env() -> dict:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _tensors(ckpt: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a training checkpoint by a flat name: weights and both optimizers' states."""
    out = {f"state_dict/{k}": v for k, v in ckpt["state_dict"].items()}
    for i, opt in enumerate(ckpt["optimizer_states"]):
        for p, state in opt["state"].items():
            out.update({f"optimizer{i}/{p}/{k}": torch.as_tensor(v) for k, v in state.items()})
    return out


# --- exact resume after SIGKILL ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sigkilled_training_resumes_bit_identically(tmp_path, capsys):
    """Kill a real `g2g train` process (SIGKILL) once its first checkpoint exists, resume it from
    last.ckpt, and compare every tensor with an uninterrupted run of the same seed."""
    steps = 9  # checkpoints every 3 steps, 5 steps per epoch: checkpoints at 3 and 6 are mid-epoch
    config = write_train_config(tmp_path / "tiny.yaml", tmp_path / "straight", checkpoint={"every_n_train_steps": 3},
                                trainer={"max_steps": steps})
    killed_dir = tmp_path / "killed"
    last = killed_dir / "checkpoints" / "last.ckpt"
    # the victim would run for 1000 steps; it is killed as soon as its first checkpoint lands
    victim = subprocess.Popen([sys.executable, "-m", "g2g.cli", "train", "--config", config,
                               "--trainer.max_steps", "1000", "--trainer.default_root_dir", str(killed_dir)],
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert main(["train", "--config", config]) == 0  # the uninterrupted run, meanwhile, in-process
        deadline = time.monotonic() + 120
        while not last.exists() and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        _, err = victim.communicate()
    assert victim.returncode == -signal.SIGKILL, err.decode()[-2000:]
    killed_at = load_checkpoint(last)["global_step"]
    assert 0 < killed_at < steps

    resumed_dir = tmp_path / "resumed"
    assert main(["train", "--config", config, "--trainer.default_root_dir", str(resumed_dir),
                 "--ckpt_path", str(last)]) == 0
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load_checkpoint(resumed_dir / "checkpoints" / "last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == steps
    a, b = _tensors(straight), _tensors(resumed)
    assert a.keys() == b.keys()
    for prefix in ("generator.", "generator_ema.", "discriminator.", "class_critic."):
        assert any(k.startswith(f"state_dict/{prefix}") for k in a), prefix
    assert sum(k.startswith("optimizer1/") for k in a) > 0  # the critics' Adam state is compared too
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} of {len(a)} tensors differ after resuming from step {killed_at}: {differing[:3]}"
    assert straight["optimizer_states"][0]["param_groups"] == resumed["optimizer_states"][0]["param_groups"]
    exported = [load_file(str(d / "model.safetensors")) for d in (tmp_path / "straight", resumed_dir)]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])


# --- kills while files are written ---------------------------------------------------------------


def test_twenty_kills_during_writes_leave_loadable_files(tmp_path):
    """A writer saves a checkpoint (the SafeCheckpointIO path), an exported model and a metrics file in a
    loop; it is SIGKILLed at 20 random moments. After every kill each file loads and is whole (one round's
    values throughout), although the kills aim at writes in progress (temporary files left over)."""
    out = tmp_path / "out"
    out.mkdir()
    server = subprocess.Popen([sys.executable, str(TESTS / "kill_writer.py"), str(out)], env=_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rng = random.Random(0)
    rounds_seen, mid_write = set(), 0
    try:
        for kill in range(20):
            leftovers = set(out.glob(".*.tmp"))  # temporary files of earlier kills
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            while kill == 0 and not (out / "metrics.json").exists():  # one whole round of files first
                time.sleep(0.01)
            time.sleep(rng.uniform(0.02, 0.3))  # a random round and file, then the next write in progress
            while not set(out.glob(".*.tmp")) - leftovers:
                time.sleep(0.0005)
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"
            mid_write += len(set(out.glob(".*.tmp")) - leftovers) > 0

            ckpt = load_checkpoint(out / "last.ckpt")
            step = ckpt["global_step"]
            assert torch.all(ckpt["state_dict"]["w"] == step), f"kill {kill}: checkpoint mixes rounds"
            weights = inference.load(out / "model.safetensors").generator.state_dict()
            model_step = {float(v.flatten()[0]) for v in weights.values() if v.is_floating_point() and v.numel()}
            assert len(model_step) == 1, f"kill {kill}: exported model mixes rounds"
            metrics = json.loads((out / "metrics.json").read_text())
            assert len(metrics["pad"]) == 200_000
            rounds_seen.add(step // 1000)
    finally:
        server.kill()
        server.communicate()
    # most kills land before the write they aim at completes: a file left half-written under its
    # temporary name, never under the real one (a write that wins the race ends in an atomic rename)
    assert mid_write >= 15, f"only {mid_write} of 20 kills hit a write in progress"
    assert len(rounds_seen) >= 15, f"the files were rewritten after only {len(rounds_seen)} of 20 kills"


# --- NaN / Inf -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_nan_stops_training_with_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys):
    """A learning rate of 1e30 blows the generator up after step 1: step 2 stops with one line naming
    the term and the step, exit 2; step 1's checkpoint stays, nothing is exported."""
    root = tmp_path / "run"
    config = write_train_config(tmp_path / "c.yaml", root, checkpoint={"every_n_train_steps": 1},
                                model={"lr_g": 1e30})
    assert main(["train", "--config", config]) == 2
    err = capsys.readouterr().err
    line = [row for row in err.splitlines() if "error:" in row]
    assert len(line) == 1 and "Traceback" not in err, err
    assert line[0].startswith("g2g: error: loss term ") and " is nan at step 2;" in line[0], line[0]
    assert "model.nan_policy: skip" in line[0]
    ckpt = load_checkpoint(root / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["last.ckpt", "step1.ckpt"]
    assert not (root / "model.safetensors").exists()


def _inject_nan(monkeypatch, method: str, term: str, step: int) -> None:
    """Make loss term `term` (computed by G2GModule.`method`) NaN in training step `step` (1-based)."""
    original = getattr(G2GModule, method)

    def poisoned(self, *args):
        terms = original(self, *args)
        if self.global_step + 1 == step:
            terms[term] = terms[term] * float("nan")
        return terms

    monkeypatch.setattr(G2GModule, method, poisoned)


def _state(module, trainer) -> dict[str, torch.Tensor]:
    opt = {f"opt{i}/{p}/{k}": v for i, o in enumerate(trainer.optimizers)
           for p, s in o.state_dict()["state"].items() for k, v in s.items()}
    return {**{k: v.clone() for k, v in module.state_dict().items()}, **opt}


# a fault in the critic step skips the whole step; one in the generator step skips the generator update
# and the EMA (the critic update of that step was computed from finite values before and stays)
@pytest.mark.parametrize("method, term, critics_move", [("critic_terms", "d_class", False),
                                                        ("generator_terms", "long", True)])
def test_nan_policy_skip_drops_the_batch_counts_it_and_resumes_exactly(fit, tmp_path, monkeypatch, method, term,
                                                                       critics_move):
    _inject_nan(monkeypatch, method, term, step=2)
    one, t1 = fit(tmp_path / "one", 1, nan_policy="skip")
    two, t2 = fit(tmp_path / "two", 2, nan_policy="skip", save_to=tmp_path / "two.ckpt")
    assert t2.global_step == 2 and two.skipped_batches == 1
    assert t2.callback_metrics["train/skipped_batches"] == 1
    before, after = _state(one, t1), _state(two, t2)
    assert before.keys() == after.keys()
    generator_side = [k for k in before if k.startswith(("generator.", "generator_ema.", "opt0/"))]
    critic_side = [k for k in before if k not in generator_side]
    assert all(torch.equal(before[k], after[k]) for k in generator_side)  # step 2 left G and EMA alone
    assert all(torch.equal(before[k], after[k]) for k in critic_side) != critics_move

    straight, t4 = fit(tmp_path / "straight", 4, nan_policy="skip")
    resumed, r4 = fit(tmp_path / "resumed", 4, ckpt_path=tmp_path / "two.ckpt", nan_policy="skip")
    assert straight.skipped_batches == resumed.skipped_batches == 1
    a, b = _state(straight, t4), _state(resumed, r4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], after[k]) for k in a)  # steps 3 and 4 trained normally


def test_nan_gradient_with_a_finite_loss_names_the_parameter(fit, tmp_path, monkeypatch):
    original = G2GModule.generator_terms

    def poisoned(self, *args):  # finite loss, infinite gradient on one weight
        terms = original(self, *args)
        if self.global_step == 1:
            next(self.generator.decoder.parameters()).register_hook(lambda g: g * float("inf"))
        return terms

    monkeypatch.setattr(G2GModule, "generator_terms", poisoned)
    with pytest.raises(FloatingPointError, match=r"^gradient of generator\.decoder\.\S+ is not finite at step 2;"):
        fit(tmp_path, 3)


FULL_DISK = """
import resource, signal, sys, torch
from g2g.checkpoint import save_checkpoint
from g2g.cli import _one_line
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save_checkpoint({"w": torch.zeros(1_000_000)}, sys.argv[1])
except OSError as e:
    print(_one_line(e))
"""


def test_a_full_disk_gives_one_line_and_keeps_the_last_checkpoint(tmp_path):
    # torch.save on a full disk says only "unexpected pos …"; the write must name the file and what to do,
    # and the checkpoint already there must survive
    path = tmp_path / "last.ckpt"
    torch.save({"w": torch.ones(3)}, path)
    before = path.read_bytes()
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith(f"could not write {path}: out of room") and "free space there" in line, line
    assert "\n" not in line
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
