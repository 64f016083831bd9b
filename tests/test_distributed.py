"""Data-parallel training: two CPU processes (ddp_spawn, gloo) see different batches and hold the same
weights after every step, because the generator and critic gradients are all-reduced."""
import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from helpers import MODULE_KWARGS, TINY, make_module
from g2g.data.datamodule import G2GDataModule
from g2g.networks.generator import generator_config
from g2g.training import ddp_strategy


class SaveRankState(Callback):
    """Each rank writes its weights and the first images it trained on to `folder/rank{r}.pt`."""

    def __init__(self, folder):
        self.folder, self.first = folder, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first is None:
            self.first = batch["x1"].clone()

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "x1": self.first, "step": trainer.global_step},
                   self.folder / f"rank{trainer.global_rank}.pt")


def test_two_cpu_processes_keep_identical_weights(tmp_path):
    torch.manual_seed(0)
    module = make_module(generator=generator_config(**TINY), **MODULE_KWARGS)
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    data = G2GDataModule(dataset="shapes", image_size=16, batch_size=4, steps_per_epoch=2, panel_size=2)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=ddp_strategy(spawn=True), max_steps=2,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                        callbacks=[SaveRankState(tmp_path)])
    trainer.fit(module, data)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 2
    assert not torch.equal(r0["x1"], r1["x1"]), "the ranks should train on different batches"
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=1e-6, msg=k)
    changed = [k for k in initial if not torch.equal(initial[k], r0["state"][k])]
    for prefix in ("generator.", "generator_ema.", "discriminator.", "class_critic."):
        assert any(k.startswith(prefix) for k in changed), f"{prefix} did not train"


@pytest.mark.parametrize("trainer, expected", [
    ({"devices": 1}, "auto"),
    ({"devices": "auto", "accelerator": "cpu"}, "auto"),
    ({"devices": 2, "accelerator": "cpu"}, "ddp_find_unused_parameters_true"),
    ({"devices": "2", "accelerator": "cpu"}, "ddp_find_unused_parameters_true"),
    ({"devices": [0, 1], "accelerator": "gpu"}, "ddp_find_unused_parameters_true"),
    ({"devices": 1, "num_nodes": 4}, "ddp_find_unused_parameters_true"),
    ({"devices": 2, "strategy": "fsdp"}, "fsdp"),
])
def test_default_strategy_for_several_processes(trainer, expected):
    from g2g.training import default_strategy
    assert default_strategy(trainer) == expected
