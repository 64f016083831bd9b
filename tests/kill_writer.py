"""Helper process of test_crash_safety.py (not a test): for every line on stdin, fork a writer that saves
a training checkpoint, an exported model and a metrics file, round after round, until the test kills it
with SIGKILL; print the writer's pid, then "reaped" once it is dead. Forking keeps torch imported once.

Every file of round i holds i everywhere (checkpoint tensor, model weights, metrics step), so a file
that mixes two rounds or is cut short shows up when the test reads it back."""
import json
import os
import sys
from pathlib import Path

import torch

from g2g.checkpoint import save_checkpoint
from g2g.files import atomic_write
from g2g.inference import export_generator
from g2g.networks.generator import Generator, generator_config


def write_rounds(out: Path, first: int, last: int) -> None:
    gen = Generator(generator_config(image_size=16, nf=8, n_downs_content=2, n_res_content=0))
    payload = torch.empty(1_000_000)  # 4 MB: a write takes long enough to be hit by a kill
    for i in range(first, last):
        payload.fill_(i)
        save_checkpoint({"global_step": i, "state_dict": {"w": payload}}, out / "last.ckpt")
        with torch.no_grad():
            for p in gen.parameters():
                p.fill_(i)
        export_generator(gen, out / "model.safetensors")
        text = json.dumps({"step": i, "pad": "x" * 200_000})
        atomic_write(out / "metrics.json", lambda tmp, text=text: Path(tmp).write_text(text))


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    (out / "warm-up").mkdir()
    write_rounds(out / "warm-up", 0, 1)  # lazy imports and first-call set-up happen before the forks
    for n, _ in enumerate(sys.stdin):
        pid = os.fork()
        if pid == 0:
            write_rounds(out, first=1000 * (n + 1), last=10**9)
            os._exit(0)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)
