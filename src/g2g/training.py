"""Training harness: LightningCLI wiring, crash-safe checkpoint I/O, export at the end of a run."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .data.datamodule import G2GDataModule
from .inference import atomic_write, export_generator
from .module import G2GModule
from .networks.generator import Generator, GeneratorConfig
from .networks.identity import IdentityNet


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed (a kill never leaves half a checkpoint),
    and read with `weights_only=True` (loading never runs pickled code)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, map_location)


def load_checkpoint(path, map_location=None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path} is not a plain-tensor G2G checkpoint (refused to unpickle: {first})") from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path} is not a readable checkpoint ({str(e).splitlines()[0]})") from None


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the EMA generator of a training checkpoint as safetensors + JSON config. A frozen VGGFace2
    class encoder is not in training checkpoints: it is read again from the run's identity_weights file,
    and the exported model then holds it (an exported model needs nothing else)."""
    ckpt = load_checkpoint(checkpoint)
    try:
        config = GeneratorConfig.from_dict(ckpt["hyper_parameters"]["generator"])
        prefix = "generator_ema."
        state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    except (KeyError, TypeError):
        raise ValueError(f"{checkpoint} is not a G2G training checkpoint (no generator config or weights)") from None
    identity = None
    if config.class_encoder == "vggface2" and not any(k.startswith("class_encoder.") for k in state):
        path = ckpt["hyper_parameters"].get("identity_weights")
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"{checkpoint}: its class encoder is the frozen VGGFace2 network, whose weights "
                                    f"training checkpoints leave out; they are read from the run's "
                                    f"identity_weights file, {path}, which is not there")
        identity = IdentityNet.from_file(path)
        state.update({f"class_encoder.{k}": v for k, v in identity.state_dict().items()})
    gen = Generator(config, class_encoder=identity)
    gen.load_state_dict(state)
    return export_generator(gen, out)


class G2GCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.image_size", "model.generator.image_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="training checkpoint to resume from (optimisers, EMA, step, data order)")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if not self._get(self.config_init, "trainer", default={}).get("plugins"):
            kwargs["plugins"] = [SafeCheckpointIO()]
        return super().instantiate_trainer(**kwargs)


def trainer_defaults() -> dict[str, Any]:
    """Trainer options of every run; a fresh checkpoint callback each time (one that has run keeps the
    folder of its first run, so a second run in the same process would write there)."""
    return {
        "default_root_dir": "outputs/train",
        "accelerator": "auto",
        "use_distributed_sampler": False,   # the step-indexed sampler shards by rank itself
        "limit_val_batches": 0,             # evaluation is `g2g eval`, not a validation loop
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 25,
        "callbacks": [ModelCheckpoint(filename="step{step}", save_last=True, save_top_k=1,
                                      every_n_epochs=1, auto_insert_metric_name=False)],
    }


def run_training(argv: list[str]) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli = G2GCLI(G2GModule, G2GDataModule, args=argv, run=False, trainer_defaults=trainer_defaults(),
                 save_config_kwargs={"overwrite": True}, seed_everything_default=0,
                 parser_kwargs={"prog": "g2g train"})
    ckpt = cli.config.get("ckpt_path")
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt)
    if cli.trainer.is_global_zero:
        out = Path(cli.trainer.log_dir or cli.trainer.default_root_dir) / "model.safetensors"
        export_generator(cli.model.generator_ema, out)
        print(f"exported the EMA generator to {out}")
    return 0
