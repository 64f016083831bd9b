"""Seconds per training step of each report preset at its own image size and batch (SPEC §2), on this
machine's CPU or GPU. Not a test: a 224 px cyclefunit step takes minutes on a CPU.

The frozen networks get random weights in their published file layouts (VGGFace2 resnet50_ft, torchvision
VGG16, written to a temporary folder), the FUNIT checkpoint is left out (a start from it costs nothing per
step), and the batches are random tensors of the preset's shape, so the number is the step alone: the G2G
pass, critic update, generator update and EMA, as `g2g train` runs them (a Lightning fit, manual
optimisation). Each preset runs in its own process (a preset that runs out of memory is reported as such).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/preset_step_time.py            # all presets, 2 steps each
    python benchmarks/preset_step_time.py --presets cyclefunit-id --steps 1 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = ("naive", "cyclefunit", "cyclefunit-id", "cyclefunit-idloss", "funit2funit")
NUM_CLASSES = {"funit2funit": 119}  # FUNIT's Animal Faces training classes; the others use no labels


def write_random_weights(folder: Path) -> dict[str, str]:
    """VGGFace2 and VGG16 state dicts with random values under the published names."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    from g2g.networks.identity import IdentityNet
    torch.save(IdentityNet().state_dict(), folder / "resnet50_ft_dag.pth")  # the official parameter names
    hub = folder / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    features = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    torch.save(features, hub / "vgg16-397923af.pth")  # torchvision's file; the classifier is never read
    return {"identity_weights": str(folder / "resnet50_ft_dag.pth"), "torch_home": str(folder)}


def measure(name: str, steps: int, threads: int, weights: dict[str, str], device: str) -> dict:
    """One preset in this process: returns {'seconds': [per step], ...}."""
    os.environ["TORCH_HOME"] = weights["torch_home"]
    import lightning as L
    import torch
    import yaml

    from g2g.cli import preset_path
    from g2g.module import G2GModule

    torch.set_num_threads(threads)
    config = yaml.safe_load(preset_path(name).read_text())
    model, data = config["model"], config["data"]
    model["generator"]["image_size"] = size = data["image_size"]
    model.update(num_classes=NUM_CLASSES.get(name, 0), panel_every=0, init_from=None)
    if model["generator"]["class_encoder"] == "vggface2" or model["lambda_identity"] > 0:
        model["identity_weights"] = weights["identity_weights"]
    if model["identity_warmup_steps"]:
        model["identity_warmup_steps"] = 0  # the identity loss at its full weight: a step of a warmed-up run
    torch.manual_seed(0)
    module = G2GModule(**model)
    b, classes = data["batch_size"], max(NUM_CLASSES.get(name, 1), 2)
    x = torch.rand(2 * b, 3, size, size) * 2 - 1
    k = data["k_refs"]
    refs = x[:, None].expand(-1, k, -1, -1, -1).contiguous()  # unsupervised: class codes from the images
    y = torch.arange(2 * b) % classes
    batch = {"x1": x[:b], "x2": x[b:], "ref1": refs[:b], "ref2": refs[b:], "y1": y[:b], "y2": y[b:]}

    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, *args):
            if device == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args):
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    loader = torch.utils.data.DataLoader([batch] * steps, batch_size=None)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator=device, devices=1, callbacks=[Clock()],
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, loader)
    return {"preset": name, "image_size": size, "pairs": b, "images_per_step": 2 * b, "threads": threads,
            "device": device, "seconds": times,
            "params_trained_M": sum(p.numel() for p in module.parameters() if p.requires_grad) / 1e6}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    p.add_argument("--steps", type=int, default=2, help="steps per preset; the last one is reported")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default="outputs/bench/preset_step_time.json")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one preset in this process
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.threads, json.loads(args.weights), args.device)))
        return 0
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_random_weights(Path(tmp))
        for name in args.presets:
            t = time.perf_counter()
            run = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                                  "--threads", str(args.threads), "--device", args.device,
                                  "--weights", json.dumps(weights)], capture_output=True, text=True)
            if run.returncode == 0:
                result = json.loads(run.stdout.strip().splitlines()[-1])
            else:  # e.g. killed for memory (-9)
                result = {"preset": name, "error": f"exit {run.returncode}: {run.stderr.strip()[-300:]}"}
            result["wall_s"] = round(time.perf_counter() - t, 1)
            results.append(result)
            print(json.dumps(result), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"load_average": os.getloadavg(), "results": results}, indent=2) + "\n")
    print(f"\n| preset | image | pairs (images) / step | s / step |\n|---|---|---|---|")
    for r in results:
        step = f"{r['seconds'][-1]:.1f}" if "seconds" in r else r["error"][:60]
        print(f"| {r['preset']} | {r.get('image_size', '')} | {r.get('pairs', '')} ({r.get('images_per_step', '')}) "
              f"| {step} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
