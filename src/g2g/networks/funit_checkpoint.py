"""NVIDIA's published FUNIT generator checkpoints ↔ G2G generators of arch "funit" (networks/funit.py).

Our parameter names differ from FewShotGen's (reflect padding inside the convolutions, AdaIN parameters
as a forward argument); `funit_key_map` pairs every tensor of ours with one of FewShotGen's, one to one:

    ours (arch "funit")                FewShotGen
    content_encoder.convs.{i}          enc_content.model.{i}.conv          i = 0 (7×7), 1…n_downs (4×4/2)
    content_encoder.res.{j}.conv{k}    enc_content.model.{n_downs+1}.model.{j}.model.{k-1}.conv
    class_encoder.convs.{i}            enc_class_model.model.{i}.conv      i = 0 (7×7), 1…n_downs (4×4/2)
    class_encoder.head                 enc_class_model.model.{n_downs+2}   (model.{n_downs+1}: the pooling)
    decoder.res.{j}.conv{k}            dec.model.0.model.{j}.model.{k-1}.conv
    decoder.res.{j}.norm{k}.running_*  dec.model.0.model.{j}.model.{k-1}.norm.running_*   (unused)
    decoder.ups.{i}                    dec.model.{2i+2}.conv               (dec.model.{2i+1}: upsampling)
    decoder.to_rgb                     dec.model.{2·n_downs+1}.conv
    decoder.mlp.{i}                    mlp.model.{i}.fc

(each row covers `.weight` and `.bias`). Checkpoint files hold `{'gen': state dict, 'gen_test': state
dict}`: `gen_test` is the EMA generator FUNIT uses for inference, `gen` the one it trains.
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from .archs import FunitArch
from .generator import ArchConfig, Generator, generator_config

# FUNIT's `configs/funit_animals.yaml` as generator_config arguments:
# nf 64, n_res_blks 2, nf_mlp 256, latent_dim 64, n_mlp_blks 3, n_downs_content 3, n_downs_class 4; 128 px.
FUNIT_ANIMALS = dict(arch="funit", image_size=128, channels=3, nf=64, n_downs_content=3, n_res_content=2,
                     n_downs_class=4, class_dim=64, n_res_decoder=2, mlp_dim=256, n_mlp=3)


def funit_key_map(config: FunitArch) -> dict[str, str]:
    """Our state-dict key → FewShotGen's, for a generator of this config (arch "funit"); the table in
    this module's docstring, spelled out."""
    c, nd, ndc = config, config.n_downs_content, config.n_downs_class
    pairs: dict[str, str] = {}

    def conv(ours: str, theirs: str) -> None:
        pairs[f"{ours}.weight"], pairs[f"{ours}.bias"] = f"{theirs}.weight", f"{theirs}.bias"

    for i in range(nd + 1):
        conv(f"content_encoder.convs.{i}", f"enc_content.model.{i}.conv")
    for j in range(c.n_res_content):
        for k in (1, 2):
            conv(f"content_encoder.res.{j}.conv{k}",
                 f"enc_content.model.{nd + 1}.model.{j}.model.{k - 1}.conv")
    for i in range(ndc + 1):
        conv(f"class_encoder.convs.{i}", f"enc_class_model.model.{i}.conv")
    conv("class_encoder.head", f"enc_class_model.model.{ndc + 2}")
    for j in range(c.n_res_decoder):
        for k in (1, 2):
            theirs = f"dec.model.0.model.{j}.model.{k - 1}"
            conv(f"decoder.res.{j}.conv{k}", f"{theirs}.conv")
            for stat in ("running_mean", "running_var"):
                pairs[f"decoder.res.{j}.norm{k}.{stat}"] = f"{theirs}.norm.{stat}"
    for i in range(nd):
        conv(f"decoder.ups.{i}", f"dec.model.{2 * i + 2}.conv")
    conv("decoder.to_rgb", f"dec.model.{2 * nd + 1}.conv")
    for i in range(c.n_mlp):
        conv(f"decoder.mlp.{i}", f"mlp.model.{i}.fc")
    return pairs


def funit_config_from_state_dict(state: Mapping[str, torch.Tensor], image_size: int = 128) -> ArchConfig:
    """Read the architecture of a FewShotGen state dict from its keys and shapes (`image_size` is not
    stored in it: 128 is what FUNIT's animal models were trained and tested at)."""
    def count(pattern: str) -> int:
        n = 0
        while pattern.format(n) in state:
            n += 1
        return n

    try:
        nf, channels = state["enc_content.model.0.conv.weight"].shape[:2]
        nd = count("enc_content.model.{}.conv.weight") - 1
        ndc = count("enc_class_model.model.{}.conv.weight") - 1
        class_dim = state[f"enc_class_model.model.{ndc + 2}.weight"].shape[0]
        mlp_dim = state["mlp.model.0.fc.weight"].shape[0]
    except (KeyError, AttributeError, IndexError, ValueError) as e:
        raise ValueError(f"not a FUNIT FewShotGen state dict (no usable {e})") from None
    return generator_config(arch="funit", image_size=image_size, channels=int(channels), nf=int(nf),
                            n_downs_content=nd, n_downs_class=ndc, class_dim=int(class_dim),
                            n_res_content=count(f"enc_content.model.{nd + 1}.model.{{}}.model.0.conv.weight"),
                            n_res_decoder=count("dec.model.0.model.{}.model.0.conv.weight"),
                            mlp_dim=int(mlp_dim), n_mlp=count("mlp.model.{}.fc.weight"))


def funit_config_of(gen: Generator, source: str = "generator") -> FunitArch:
    """The config of `gen`, which must be of arch "funit" (a one-line ValueError naming `source` if not)."""
    if not isinstance(gen.config, FunitArch):
        raise ValueError(f"{source}: FUNIT weights need a generator of arch 'funit', not {gen.config.arch!r}")
    return gen.config


def load_funit_state_dict(gen: Generator, state: Mapping[str, torch.Tensor],
                          source: str = "state dict") -> Generator:
    """Copy a FewShotGen state dict into `gen` (arch "funit") by key mapping. A missing, misshaped or
    unexpected key raises a one-line ValueError that names it (NVIDIA's name) and `source`."""
    config = funit_config_of(gen, source)
    ours = gen.state_dict()
    pairs = funit_key_map(config)
    converted = {}
    for mine, theirs in pairs.items():
        if theirs not in state:
            raise ValueError(f"{source}: missing key {theirs!r} (expected by a FUNIT generator with "
                             f"nf {config.nf}, n_downs_content {config.n_downs_content})")
        t = state[theirs]
        if not isinstance(t, torch.Tensor) or t.shape != ours[mine].shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{source}: key {theirs!r} has shape {got}, expected {tuple(ours[mine].shape)}")
        converted[mine] = t.to(torch.float32).contiguous()
    extra = sorted(set(state) - set(pairs.values()))
    if extra:
        raise ValueError(f"{source}: unexpected key {extra[0]!r} ({len(extra)} in all): "
                         f"not a FUNIT generator of this architecture")
    gen.load_state_dict(converted, assign=any(t.is_meta for t in ours.values()))
    return gen


def to_funit_state_dict(gen: Generator) -> dict[str, torch.Tensor]:
    """Our weights under FewShotGen's names: what NVIDIA's code loads with `load_state_dict`."""
    ours = gen.state_dict()
    return {theirs: ours[mine] for mine, theirs in funit_key_map(funit_config_of(gen)).items()}


def read_funit_checkpoint(path: str | Path, which: str = "gen_test") -> dict[str, torch.Tensor]:
    """One state dict of a FUNIT generator checkpoint (torch.save of {'gen': ..., 'gen_test': ...}), read
    without unpickling code (weights_only). which: 'gen_test' (EMA, for inference) or 'gen' (training)."""
    if which not in ("gen", "gen_test"):
        raise ValueError(f"which must be 'gen' or 'gen_test', not {which!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FUNIT checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path} is not a safetensors model file, and as a torch file it was refused "
                         f"(weights_only unpickling: {first}); give a model written by `g2g export`") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable torch file ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, Mapping) or which not in ckpt:
        hint = (" (a G2G training checkpoint: export it first with `g2g export`)"
                if isinstance(ckpt, Mapping) and "state_dict" in ckpt else "")
        raise ValueError(f"{path} is not a safetensors model file nor a FUNIT generator checkpoint (no {which!r} "
                         f"entry){hint or '; give a model written by `g2g export`'}")
    if not isinstance(ckpt[which], Mapping):
        raise ValueError(f"{path}: {which!r} is a {type(ckpt[which]).__name__}, not a state dict")
    return ckpt[which]


def load_funit_checkpoint(path: str | Path, which: str = "gen_test", image_size: int = 128,
                          config: ArchConfig | None = None) -> Generator:
    """A Generator (arch "funit") holding one generator of NVIDIA's FUNIT checkpoint. The architecture is
    read from the file unless `config` is given; 'gen_test' is FUNIT's EMA generator, used for inference."""
    state = read_funit_checkpoint(path, which)
    if config is None:
        try:
            config = funit_config_from_state_dict(state, image_size)
        except ValueError as e:
            raise ValueError(f"{path}[{which!r}]: {e}") from None
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        gen = Generator(config)
    return load_funit_state_dict(gen, state, source=f"{path}[{which!r}]").eval()


def init_from_funit_checkpoint(gen: Generator, path: str | Path, which: str = "gen") -> Generator:
    """Initialise an existing generator (arch "funit", e.g. the one a training module built from its
    config) from a FUNIT checkpoint, in place. For training (an `init_from: PATH` option), load 'gen' into
    the trained generator and 'gen_test' into its EMA copy, as FUNIT's own resume does."""
    return load_funit_state_dict(gen, read_funit_checkpoint(path, which), source=f"{path}[{which!r}]")
