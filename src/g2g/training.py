"""Training harness: LightningCLI wiring, crash-safe checkpoint I/O, export at the end of a run."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError, set_parsing_settings
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .callbacks import CollapseAlarm, CopyThroughAlarm
from .checkpoint import export_checkpoint, load_checkpoint, save_checkpoint  # noqa: F401 (export_checkpoint: API)
from .data.datamodule import G2GDataModule
from .inference import export_generator
from .module import G2GModule
from .networks.generator import config_from_dict
from .panels import PanelLogger


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed (a kill never leaves half a checkpoint),
    and read with `weights_only=True` (loading never runs pickled code)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, map_location)


def check_resumable(model: G2GModule, ckpt_path: str | Path) -> None:
    """Refuse, in one line, a checkpoint whose networks differ from the ones this config builds (before
    Lightning fails with a multi-line state-dict error)."""
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{ckpt_path} is not a G2G training checkpoint (no state_dict); give a .ckpt "
                         f"written by `g2g train`")
    fix = "resume with the config it was trained with (config.yaml in its run folder) or drop --ckpt_path"
    theirs: Any = (ckpt.get("hyper_parameters") or {}).get("generator")
    ours = model.hparams["generator"]
    try:  # fields added since the checkpoint was written take their defaults
        theirs = config_from_dict(theirs, legacy=True).to_dict()
    except (ValueError, TypeError, AttributeError):
        pass
    if isinstance(theirs, dict) and theirs != ours:
        diff = [f"{k}: checkpoint {theirs.get(k)!r}, config {ours.get(k)!r}"
                for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
        raise ValueError(f"{ckpt_path} was trained with another generator ({'; '.join(diff[:4])}); {fix}")
    state, own = ckpt["state_dict"], model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    resized = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or resized:
        parts = [f"{name} {keys[0]}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("resized", resized)) if keys]
        raise ValueError(f"{ckpt_path} does not match the networks of this config ({'; '.join(parts)}); {fix}")


class G2GCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # data.image_size sets model.generator's image_size (before_instantiate_classes): a link cannot
        # reach into the generator's mapping, whose keys depend on its arch
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="training checkpoint to resume from (optimisers, EMA, step, data order)")
        # configurable default callbacks (trainer_defaults callbacks cannot take options): --copy_through.*,
        # --collapse.*
        parser.add_lightning_class_args(CopyThroughAlarm, "copy_through")
        parser.add_lightning_class_args(CollapseAlarm, "collapse")
        parser.add_lightning_class_args(PanelLogger, "panels")
        # checkpoints as options: every epoch by default, or --checkpoint.every_n_train_steps N
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.filename": "step{step}", "checkpoint.save_last": True,
                             "checkpoint.save_top_k": 1, "checkpoint.auto_insert_metric_name": False})

    def before_instantiate_classes(self) -> None:
        config = self._get(self.config, "model")
        generator = dict(config.get("generator") or {})
        generator["image_size"] = self._get(self.config, "data").get("image_size")
        config["generator"] = generator

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        if not config.get("plugins"):
            kwargs["plugins"] = [SafeCheckpointIO()]
        kwargs["strategy"] = default_strategy(config)
        return super().instantiate_trainer(**kwargs)


def _process_count(devices: Any) -> int:
    """Processes per node that Lightning starts for a `devices` value (-1 and 'auto': every GPU)."""
    import torch
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        if "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
        if devices.strip().lstrip("-").isdigit():
            devices = int(devices)
        else:  # "auto"
            return max(torch.cuda.device_count(), 1)
    return max(torch.cuda.device_count(), 1) if devices == -1 else int(devices)


def ddp_strategy(spawn: bool = False) -> str:
    """Lightning's DDP for the G2G step. One forward pass feeds two backward passes on disjoint
    parameters (the critic's loss never reaches the generator, the generator's reaches the critics only
    while they are frozen), so every backward leaves parameters without gradients: plain `ddp` stops
    with "parameters that were not used in producing the loss", `find_unused_parameters` marks them
    ready on each `manual_backward`."""
    return "ddp_spawn_find_unused_parameters_true" if spawn else "ddp_find_unused_parameters_true"


def default_strategy(trainer: dict) -> Any:
    """The trainer's strategy, with 'auto' meaning DDP with unused parameters when more than one
    process trains (several devices or nodes) and a single device otherwise."""
    strategy = trainer.get("strategy", "auto")
    if strategy != "auto":
        return strategy
    devices = trainer.get("devices", "auto")
    if trainer.get("accelerator") == "cpu" and devices in ("auto", -1, "-1"):
        devices = 1  # Lightning's 'auto' on a CPU is one process
    several = int(trainer.get("num_nodes", 1) or 1) > 1 or _process_count(devices) > 1
    return ddp_strategy() if several else "auto"


TRAINER_DEFAULTS = {
    "default_root_dir": "outputs/train",
    "accelerator": "auto",
    "use_distributed_sampler": False,   # the step-indexed sampler shards by rank itself
    "limit_val_batches": 0,             # evaluation is `g2g eval`, not a validation loop
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 25,
}


def _check_config_files(argv: list[str]) -> None:
    """A config file that is not YAML gets a line naming it (jsonargparse's message does not)."""
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for name in files:
        if not Path(name).is_file():
            continue  # jsonargparse says "File does not exist" itself
        try:
            yaml.safe_load(Path(name).read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"config file {name} is not valid YAML ({' '.join(str(e).split())})") from None


def run_training(argv: list[str]) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # checkpoints after the step are what we want (the data stream and noise are indexed by step)
    warnings.filterwarnings("ignore", "Using ModelCheckpoint with manual optimization")
    _check_config_files(argv)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # the option groups' field docs in --help
    argv_before = sys.argv
    sys.argv = ["g2g train", *argv]  # LightningCLI reads sys.argv (passing args= too makes it warn)
    try:
        cli = G2GCLI(G2GModule, G2GDataModule, run=False, trainer_defaults=TRAINER_DEFAULTS,
                     save_config_kwargs={"overwrite": True}, seed_everything_default=0,
                     parser_kwargs={"prog": "g2g train", "exit_on_error": False})
    except ArgumentError as e:  # a bad option or config file: one line, not three pages of usage
        message = " ".join(str(e).split())
        raise ValueError(f"{message} (see `g2g train --help`)") from None
    except MisconfigurationException as e:
        raise ValueError(str(e)) from None
    finally:
        sys.argv = argv_before
    ckpt = cli.config.get("ckpt_path")
    if ckpt is not None and ckpt not in ("last", "best", "hpc", "registry"):  # Lightning's lookup names
        check_resumable(cli.model, ckpt)
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt)
    if cli.trainer.is_global_zero:
        out = Path(cli.trainer.log_dir or cli.trainer.default_root_dir) / "model.safetensors"
        export_generator(cli.model.generator_ema, out)
        print(f"exported the EMA generator to {out}")
    return 0
