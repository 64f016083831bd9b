"""Shared test helpers: a tiny generator config, a tiny, fast training run (CPU, offline, fixed seeds)
and a `g2g train` config file for it. Fixtures that use them are in conftest.py."""
from __future__ import annotations

from g2g.networks.generator import generator_config

TINY = dict(image_size=16, nf=4, n_downs_content=2, content_channels=2, n_res_content=0,
            n_downs_class=2, class_dim=8, n_res_decoder=1, mlp_dim=16, n_mlp=2)

def grouped(**flat) -> dict:
    """G2GModule options from flat names: each loss weight, critic, optimiser, schedule or frozen-network
    option goes into its group (lambda_adv=1.0 → loss={"lambda_adv": 1.0}); the rest stays as it is."""
    from dataclasses import fields

    from g2g.hparams import CriticOptions, FrozenNets, LossWeights, OptimOptions, Schedule
    groups = {"loss": LossWeights, "critic": CriticOptions, "optim": OptimOptions, "schedule": Schedule,
              "frozen": FrozenNets}
    where = {f.name: g for g, cls in groups.items() for f in fields(cls)}
    out: dict = {}
    for key, value in flat.items():
        if key in where:
            out.setdefault(where[key], {})[key] = value
        elif key in groups and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def make_module(**flat):
    """A G2GModule from flat option names (see `grouped`)."""
    from g2g.module import G2GModule
    return G2GModule(**grouped(**flat))


MODULE_KWARGS = dict(num_classes=30, lambda_class=1.0, lambda_adv=1.0, lambda_class_cycle=1.0,
                     lambda_content_l2=0.01, content_noise=0.3, discriminator="n_layers", d_layers=2,
                     ndf=4, ema_decay=0.999, seed=0)


def fit_tiny(root, max_steps: int, ckpt_path=None, save_to=None, steps_per_epoch: int = 2, **overrides):
    """Train a tiny G2G model on 16 px shapes for `max_steps` generator steps (optionally resuming from
    `ckpt_path`, optionally saving a checkpoint to `save_to` at the end). Returns (module, trainer)."""
    import lightning as L

    from g2g.data.datamodule import G2GDataModule
    from g2g.training import SafeCheckpointIO

    module = make_module(**{"generator": generator_config(**TINY), **MODULE_KWARGS, **overrides})
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


def write_train_config(path, root, dataset: str = "shapes", **sections) -> str:
    """A YAML config for `g2g train` with the tiny networks above (CPU, no logger, no progress bar).
    `sections` update the trainer / checkpoint / model / data sections, e.g. model={"lr_g": 1e30} (flat
    module option names are put in their groups)."""
    import yaml

    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 4, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "accelerator": "cpu", "default_root_dir": str(root)},
        "checkpoint": {"every_n_train_steps": 2},
        "model": {"generator": dict(TINY), **grouped(**{k: v for k, v in MODULE_KWARGS.items() if k != "num_classes"})},
        "panels": {"every_n_steps": 0},
        "data": {"dataset": dataset, "image_size": 16, "batch_size": 4, "steps_per_epoch": 5, "panel_size": 2},
    }
    for name, values in sections.items():
        for key, value in (grouped(**values) if name == "model" else values).items():
            merge = isinstance(value, dict) and isinstance(config[name].get(key), dict)
            config[name][key] = {**config[name][key], **value} if merge else value
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


# --- the app's tests: a tiny model and images as the page shows them ---------------------------------

def tiny_model_file(path):
    """A 16 px generator with every weight perturbed, so that its outputs differ between inputs."""
    import torch

    from g2g.inference import export_generator
    from g2g.networks.generator import Generator
    torch.manual_seed(0)
    gen = Generator(generator_config(**TINY))
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return export_generator(gen.eval(), path)


def decode(data_url: str):
    """A PNG data URL → (H, W, 3) uint8 array."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    assert data_url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_url.partition(",")[2]))) as img:
        return np.asarray(img.convert("RGB"))


def quantised(t):
    """(1, 3, H, W) or (3, H, W) in [-1, 1] → (H, W, 3) uint8, as `g2g swap` saves it (save_image)."""
    import torch
    t = (t.reshape(-1, *t.shape[-2:]) * 0.5 + 0.5).mul(255).add(0.5).clamp(0, 255)
    return t.permute(1, 2, 0).to(torch.uint8).numpy()


def read(paths, model):
    """Image files as the model reads them, (N, 3, S, S)."""
    import torch

    from g2g.data.datasets import load_image
    return torch.stack([load_image(p, model.config.image_size, crop=model.config.crops) for p in paths])


# --- fonts every test environment has: matplotlib's DejaVu and STIX files (two family groups) ---------------

TEST_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf",
              "STIXGeneralBol.ttf"]


def copy_test_fonts(root):
    """Copy TEST_FONTS from matplotlib's data folder into root; returns root."""
    import shutil
    from pathlib import Path

    import matplotlib
    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name in TEST_FONTS:
        shutil.copy(source / name, Path(root) / name)
    return root
