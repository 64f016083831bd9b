"""Shared fixtures: a tiny generator config and a tiny, fast training run (CPU, offline, fixed seeds)."""
import os
from types import SimpleNamespace

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from g2g.networks.generator import GeneratorConfig  # noqa: E402

torch.set_num_threads(1)

TINY = dict(image_size=16, nf=4, n_downs_content=2, content_channels=2, n_res_content=0,
            n_downs_class=2, class_dim=8, n_res_decoder=1, mlp_dim=16, n_mlp=2)


@pytest.fixture
def tiny_config() -> GeneratorConfig:
    """A 16 px generator of a few thousand parameters: content code (2, 4, 4), class code (8,)."""
    return GeneratorConfig(**TINY)


# --- tiny training runs --------------------------------------------------------------------------

MODULE_KWARGS = dict(num_classes=30, lambda_class=1.0, lambda_adv=1.0, lambda_class_cycle=1.0,
                     lambda_content_l2=0.01, content_noise=0.3, discriminator="n_layers", d_layers=2,
                     ndf=4, ema_decay=0.999, panel_every=0, seed=0)


def fit_tiny(root, max_steps: int, ckpt_path=None, save_to=None, steps_per_epoch: int = 2, **overrides):
    """Train a tiny G2G model on 16 px shapes for `max_steps` generator steps (optionally resuming from
    `ckpt_path`, optionally saving a checkpoint to `save_to` at the end). Returns (module, trainer)."""
    import lightning as L

    from g2g.data.datamodule import G2GDataModule
    from g2g.module import G2GModule
    from g2g.training import SafeCheckpointIO

    module = G2GModule(generator=GeneratorConfig(**TINY), **{**MODULE_KWARGS, **overrides})
    data = G2GDataModule(dataset="shapes", image_size=16, batch_size=4, steps_per_epoch=steps_per_epoch,
                         panel_size=2)
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        use_distributed_sampler=False, limit_val_batches=0, num_sanity_val_steps=0,
                        default_root_dir=str(root), plugins=[SafeCheckpointIO()])
    trainer.fit(module, data, ckpt_path=None if ckpt_path is None else str(ckpt_path))
    if save_to is not None:
        trainer.save_checkpoint(str(save_to), weights_only=False)  # with optimizer states
    return module, trainer


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One 2-step training run shared by the tests that only read it: initial state dict, module, trainer
    and the checkpoint written at step 2."""
    root = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    from g2g.module import G2GModule
    initial = {k: v.clone() for k, v in
               G2GModule(generator=GeneratorConfig(**TINY), **MODULE_KWARGS).state_dict().items()}
    module, trainer = fit_tiny(root, max_steps=2, save_to=root / "step2.ckpt")
    return SimpleNamespace(initial=initial, module=module, trainer=trainer, ckpt=root / "step2.ckpt")


@pytest.fixture
def fit():
    """`fit(root, max_steps, ckpt_path=None, save_to=None, steps_per_epoch=2, **module_overrides)`."""
    return fit_tiny


def write_train_config(path, root, dataset: str = "shapes", **sections) -> str:
    """A YAML config for `g2g train` with the tiny networks above (CPU, no logger, no progress bar).
    `sections` update the trainer / checkpoint / model / data sections, e.g. model={"lr_g": 1e30}."""
    import yaml

    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 4, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "accelerator": "cpu", "default_root_dir": str(root)},
        "checkpoint": {"every_n_train_steps": 2},
        "model": {"generator": dict(TINY), **{k: v for k, v in MODULE_KWARGS.items() if k != "num_classes"}},
        "data": {"dataset": dataset, "image_size": 16, "batch_size": 4, "steps_per_epoch": 5, "panel_size": 2},
    }
    for name, values in sections.items():
        config[name].update(values)
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)
