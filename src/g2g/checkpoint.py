"""Training checkpoints on disk: atomic saving, loading that never unpickles code, export of the EMA
generator. No Lightning import, so `g2g export` starts fast (the Lightning harness uses these too)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write
from .inference import export_generator
from .networks.generator import Generator, config_from_dict


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """torch.save to a temporary file renamed into place: a kill leaves the old file or the new one."""
    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str | Path, map_location=None) -> dict[str, Any]:
    """A training checkpoint with `weights_only=True`: tensors and plain containers only, so loading
    never runs pickled code. User mistakes raise FileNotFoundError/ValueError with one line."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a checkpoint file (.ckpt), e.g. {path}/last.ckpt")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on foreign or damaged files (KeyError on text, ...)
        text = str(e)
        code = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if code:
            raise ValueError(f"{path} is not a plain-tensor G2G checkpoint (refused to unpickle {code.group(1)}; "
                             f"nothing was run): use a .ckpt written by `g2g train`") from None
        raise ValueError(f"{path} is not a readable checkpoint ({_reason(e)}); it may be truncated or another "
                         f"kind of file: give a .ckpt written by `g2g train`") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, not a G2G training checkpoint")
    return ckpt


def _reason(e: Exception) -> str:
    """The informative bit of torch.load's (long, multi-line) error message."""
    text = str(e)
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        return detail.group(1).strip()
    first = (text.strip().splitlines() or [""])[0].split(". ")[0].strip()
    return f"{type(e).__name__}: {first}" if len(first) < 8 else first


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the EMA generator of a training checkpoint as safetensors + JSON config. A frozen VGGFace2
    class encoder is not in training checkpoints: it is read again from the run's identity_weights file,
    and the exported model then holds it (an exported model needs nothing else)."""
    ckpt = load_checkpoint(checkpoint)
    try:
        config = config_from_dict(ckpt["hyper_parameters"]["generator"], legacy=True)
        prefix = "generator_ema."
        state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    except (KeyError, TypeError, AttributeError):
        raise ValueError(f"{checkpoint} is not a G2G training checkpoint (no generator config or weights)") from None
    identity = None
    if config.class_encoder == "vggface2" and not any(k.startswith("class_encoder.") for k in state):
        from .networks.identity import IdentityNet
        path = (ckpt["hyper_parameters"].get("frozen") or {}).get("identity_weights")
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"{checkpoint}: its class encoder is the frozen VGGFace2 network, whose weights "
                                    f"training checkpoints leave out; they are read from the run's "
                                    f"identity_weights file, {path}, which is not there")
        identity = IdentityNet.from_file(path)
        state.update({f"class_encoder.{k}": v for k, v in identity.state_dict().items()})
    gen = Generator(config, class_encoder=identity)
    try:
        gen.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{checkpoint} holds weights that do not match its generator config ({first})") from None
    return export_generator(gen, out)
