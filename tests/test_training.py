"""Training harness: what one step updates, exact resume and safe checkpoint loading."""
import os
import pickle

import pytest
import torch

from helpers import make_module

from g2g.training import load_checkpoint


def _changed(before: dict, after: dict, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)}


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} of {len(a)} tensors differ, e.g. {differing[:3]}"


def _optimizer_tensors(trainer) -> list[torch.Tensor]:
    return [v for opt in trainer.optimizers for s in opt.state_dict()["state"].values() for v in s.values()]


# --- what a step updates -------------------------------------------------------------------------


def test_two_steps_count_generator_steps_and_update_every_network(tiny_run):
    assert tiny_run.trainer.global_step == 2  # critic steps are not counted
    assert len(tiny_run.trainer.optimizers) == 2
    before, after = tiny_run.initial, tiny_run.module.state_dict()
    assert all(_changed(before, after, "generator.").values())
    assert all(_changed(before, after, "generator_ema.").values())
    assert all(_changed(before, after, "class_critic.").values())
    assert any(_changed(before, after, "discriminator.").values())
    for k, v in after.items():
        if k.startswith("generator."):  # the EMA trails the generator: different, but not by much
            ema = after["generator_ema." + k[len("generator."):]]
            assert not torch.equal(ema, v), k


def test_ema_weights_are_not_trained(tiny_run):
    assert not any(p.requires_grad for p in tiny_run.module.generator_ema.parameters())
    assert all(p.requires_grad for p in tiny_run.module.class_critic.parameters())  # unfrozen after the G step


def test_generator_only_run_uses_one_optimizer(fit, tmp_path):
    module, trainer = fit(tmp_path, 1, lambda_class=0.0, lambda_adv=0.0, num_classes=0)
    assert trainer.global_step == 1 and len(trainer.optimizers) == 1
    assert module.discriminator is None and module.class_critic is None


def test_module_rejects_bad_options(tiny_config):
    with pytest.raises(ValueError, match="unknown gan_loss 'nope'"):
        make_module(generator=tiny_config, gan_loss="nope")
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_module(generator=tiny_config, lambda_class=1.0, num_classes=1)
    with pytest.raises(ValueError, match="bogus"):
        make_module(generator={**tiny_config.to_dict(), "bogus": 1})


# --- exact resume --------------------------------------------------------------------------------


def test_resume_at_an_epoch_end_is_bit_identical(fit, tiny_run, tmp_path):
    straight, t_straight = fit(tmp_path / "straight", 4)
    resumed, t_resumed = fit(tmp_path / "resumed", 4, ckpt_path=tiny_run.ckpt)  # from step 2 of 4
    assert t_resumed.global_step == t_straight.global_step == 4
    _assert_same_state(straight.state_dict(), resumed.state_dict())  # generator, EMA, both critics
    for a, b in zip(_optimizer_tensors(t_straight), _optimizer_tensors(t_resumed), strict=True):
        assert torch.equal(a, b)


def test_resume_mid_epoch_is_bit_identical(fit, tmp_path):
    straight, _ = fit(tmp_path / "straight", 4, steps_per_epoch=4)
    fit(tmp_path / "first", 2, save_to=tmp_path / "mid.ckpt", steps_per_epoch=4)
    resumed, trainer = fit(tmp_path / "resumed", 4, ckpt_path=tmp_path / "mid.ckpt", steps_per_epoch=4)
    assert trainer.global_step == 4
    _assert_same_state(straight.state_dict(), resumed.state_dict())


def test_resume_with_wgangp_is_bit_identical(fit, tmp_path):
    straight, _ = fit(tmp_path / "straight", 4, gan_loss="wgangp")
    fit(tmp_path / "first", 2, save_to=tmp_path / "s2.ckpt", gan_loss="wgangp")
    resumed, _ = fit(tmp_path / "resumed", 4, ckpt_path=tmp_path / "s2.ckpt", gan_loss="wgangp")
    _assert_same_state(straight.state_dict(), resumed.state_dict())


# --- checkpoint files ----------------------------------------------------------------------------


def test_checkpoint_is_plain_tensors_and_describes_its_generator(tiny_run, tiny_config):
    ckpt = torch.load(tiny_run.ckpt, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert ckpt["hyper_parameters"]["generator"] == tiny_config.to_dict()
    assert len(ckpt["optimizer_states"]) == 2
    _assert_same_state(ckpt["state_dict"], tiny_run.module.state_dict())
    assert load_checkpoint(tiny_run.ckpt)["global_step"] == 2


class _Exploit:
    """Unpickling this creates `path`: a stand-in for arbitrary code (os.system etc.)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Exploit(control)))  # the payload works when unpickled plainly
    assert control.exists()

    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps({"state_dict": {}, "x": _Exploit(marker)}, protocol=2))
    zipped = tmp_path / "zipped.ckpt"
    torch.save({"state_dict": {}, "x": _Exploit(marker)}, zipped)  # torch's own format, same payload
    for path in (raw, zipped):
        with pytest.raises(ValueError, match="refused to unpickle|not a readable checkpoint"):
            load_checkpoint(path)
    assert not marker.exists()


def test_load_checkpoint_user_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.ckpt"):
        load_checkpoint(text)
    assert os.listdir(tmp_path) == ["notes.ckpt"]


def test_folder_dataset_trains_and_evaluates(tmp_path):
    """A user's labelled folder: train one step through the datamodule, evaluate on its test split."""
    import lightning as L
    from PIL import Image

    from g2g.data.datamodule import G2GDataModule
    from g2g.evaluation.report import run_eval
    from g2g.inference import export_generator
    from g2g.networks.generator import generator_config
    from helpers import TINY

    rng = torch.Generator().manual_seed(0)
    for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / "data" / f"class{c}").mkdir(parents=True)
        for k in range(10):
            noise = (torch.rand(20, 20, 3, generator=rng) * 60).to(torch.uint8).numpy()
            img = Image.fromarray(noise)
            img.paste(Image.new("RGB", (10, 10), colour), (5, 5))  # a coloured square on noise
            img.save(tmp_path / "data" / f"class{c}" / f"{k}.png")
    module = make_module(generator=generator_config(**TINY))
    data = G2GDataModule(dataset="folder", root=str(tmp_path / "data"), image_size=16, batch_size=2,
                         steps_per_epoch=1, panel_size=2)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", use_distributed_sampler=False,
                        limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(module, data)
    assert len(data.train_set.base) == 16  # 80 % of 2 × 10 images
    path = export_generator(module.generator_ema, tmp_path / "m.safetensors")
    report = run_eval(path, data="folder", root=str(tmp_path / "data"), out_dir=tmp_path / "eval",
                      n_pairs=20, classifier_steps=200)
    assert "class_transfer" in report["test"]


def test_clip_grad_norm_bounds_every_generator_update(tmp_path, fit, monkeypatch):
    """With clip_grad_norm the generator optimiser only ever steps on a gradient of at most that norm, and
    the norm before clipping is logged."""
    seen = []  # (ids of the parameters, gradient norm) at every optimiser step
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(({id(p) for group in self.param_groups for p in group["params"]},
                     float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    module, trainer = fit(tmp_path, max_steps=3, clip_grad_norm=1e-3)
    first = id(next(module.generator.parameters()))
    generator_steps = [norm for ids, norm in seen if first in ids]
    assert len(generator_steps) == 3
    assert max(generator_steps) <= 1e-3 * 1.0001
    assert float(trainer.callback_metrics["train/grad_norm_g"]) > 1e-2  # the unclipped norm is far larger


def test_clip_grad_norm_must_not_be_negative(tiny_config):
    with pytest.raises(ValueError, match="clip_grad_norm must be >= 0"):
        make_module(generator=tiny_config, clip_grad_norm=-1.0)
    with pytest.raises(ValueError, match="clip_spike must be 0"):
        make_module(generator=tiny_config, clip_spike=0.5)


def test_lr_tail_factor_and_the_rates_a_short_run_ends_with(tmp_path, fit):
    from g2g.optim import tail_factor
    assert tail_factor(0.3, 0.5) == 1.0 and tail_factor(0.5, 0.5) == 1.0 and tail_factor(None, 0.5) == 1.0
    assert tail_factor(0.75, 0.5) == pytest.approx(0.5) and tail_factor(1.0, 0.5) == pytest.approx(0.0)
    assert tail_factor(0.99, 0.0) == 1.0
    # 4 steps with the last half in the tail: the rates of steps 0-3 are 1, 1, 1, 0.5 × the base rates
    module, trainer = fit(tmp_path, max_steps=4, lr_tail=0.5)
    opt_g, opt_d = trainer.optimizers
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.5 * module.optim.lr_g)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.5 * module.optim.lr_d)
    assert float(trainer.callback_metrics["train/lr_factor"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr_tail must be within"):
        make_module(generator=module.hparams.generator, lr_tail=1.5)


def test_long_start_trains_the_reassembly_pass_only_from_that_fraction_of_the_run(tmp_path, fit, monkeypatch):
    from g2g import module as module_file
    calls, forward = [], module_file.g2g_forward

    def recorded(*args, **kwargs):
        calls.append(kwargs["long"])
        return forward(*args, **kwargs)

    monkeypatch.setattr(module_file, "g2g_forward", recorded)
    module, trainer = fit(tmp_path, max_steps=4, lambda_long=1.0, long_start=0.5)
    assert calls == [False, False, True, True]  # steps 0-3 of 4: progress 0, 0.25, 0.5, 0.75
    assert "train/long" in trainer.callback_metrics
    calls.clear()
    fit(tmp_path / "off", max_steps=2, lambda_long=0.0, lambda_class_cycle=0.0, long_start=0.5)
    assert calls == [False, False]  # no term needs the reassembly pass: it never runs
    with pytest.raises(ValueError, match="long_start must be within"):
        make_module(generator=module.hparams.generator, long_start=1.0)


def test_run_progress_of_a_timed_run_is_rank_zeros_on_every_rank():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from g2g.optim import run_progress
    timer = Timer(duration="00:00:01:40")  # 100 s
    timer.time_elapsed = lambda stage: 25.0
    timer.time_remaining = lambda stage: 75.0
    sent = []
    strategy = SimpleNamespace(broadcast=lambda value: sent.append(value) or 0.5)  # rank 0 is further on
    trainer = SimpleNamespace(max_steps=-1, callbacks=[timer], world_size=2, strategy=strategy)
    assert run_progress(trainer, 10) == 0.5 and sent == [0.25]
    assert run_progress(SimpleNamespace(**{**vars(trainer), "world_size": 1}), 10) == 0.25  # one process: no sync
    assert run_progress(SimpleNamespace(**{**vars(trainer), "max_steps": 40}), 10) == 0.25  # steps: no clock


def test_clip_spike_caps_a_spike_at_a_multiple_of_the_running_norm():
    from g2g.optim import SPIKE_RATE, clip_gradients

    def grads(norm):  # two tensors of joint norm `norm`
        return [torch.tensor([0.6 * norm, 0.0]), torch.tensor([0.8 * norm])]

    def norm(gs):
        return float(torch.linalg.vector_norm(torch.cat(gs)))

    running = torch.zeros(())
    g = grads(1.0)  # the first step: no mean yet, capped by max_norm only; starts the mean at its norm
    total, running = clip_gradients(g, 10.0, 2.0, running)
    assert float(total) == pytest.approx(1.0) and norm(g) == pytest.approx(1.0) and float(running) == pytest.approx(1.0)
    g = grads(1.5)  # within 2× the mean: untouched; the mean moves towards it at SPIKE_RATE
    clip_gradients(g, 10.0, 2.0, running.clone())
    assert norm(g) == pytest.approx(1.5)
    g = grads(8.0)  # a spike below the fixed cap of 10 but 8× the mean: capped at 2× the mean
    total, after = clip_gradients(g, 10.0, 2.0, running)
    assert float(total) == pytest.approx(8.0) and norm(g) == pytest.approx(2.0, rel=1e-5)
    assert float(after) == pytest.approx(1.0 + SPIKE_RATE * (2.0 - 1.0))  # the capped norm enters the mean
    g = grads(50.0)  # without spike, only the fixed cap applies and no mean is kept
    total, none = clip_gradients(g, 10.0)
    assert none is None and norm(g) == pytest.approx(10.0, rel=1e-5) and float(total) == pytest.approx(50.0)
