"""Checks that need a CUDA device (marker `cuda`; skipped elsewhere). benchmarks/gpu_check.sh runs them."""
import pytest
import torch

from helpers import make_module

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_mixed_steps_train_fp32_weights(tmp_path, fit):
    """bf16 autocast through Lightning's precision flag: losses finite, weights stay fp32 and change."""
    import lightning as L

    from helpers import MODULE_KWARGS, TINY
    from g2g.data.datamodule import G2GDataModule
    from g2g.networks.generator import generator_config

    module = make_module(generator=generator_config(**TINY), **MODULE_KWARGS)
    before = {k: v.clone() for k, v in module.generator.state_dict().items()}
    data = G2GDataModule(dataset="shapes", image_size=16, batch_size=4, steps_per_epoch=3, panel_size=2)
    trainer = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, use_distributed_sampler=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module, data)
    assert torch.isfinite(trainer.callback_metrics["loss"])
    after = module.generator.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before)


def test_bench_on_cuda_reports_bf16_and_fp32_peaks():
    from g2g.bench import RESULT_FIELDS, run_bench
    r = run_bench("g2g", 32, 4, device="cuda", steps=3, warmup=1)
    assert set(RESULT_FIELDS) <= set(r)
    assert r["precision"] == "bf16-mixed" and set(r["matmul_peak_gflops"]) == {"fp32", "bf16"}
    assert r["memory_kind"] == "cuda allocator peak" and r["peak_memory_mb"] > 0 and r["gflop_per_step"] > 0


def test_instance_norm_stays_bf16_under_autocast_and_matches_fp32():
    """CUDA autocast runs group norm in fp32 (two full-size casts per norm); instance_norm keeps bf16 in
    and out, with the statistics still accumulated in fp32: it agrees with the fp32 norm to bf16 rounding,
    forward and backward."""
    import torch.nn.functional as F

    from g2g.networks.blocks import adain, instance_norm
    x = (torch.randn(4, 32, 24, 24, device="cuda") * 3 + 1).requires_grad_()
    w = torch.randn(4, 32, 24, 24, device="cuda")
    ref = F.group_norm(x, 32)
    (ref * w).sum().backward()
    ref_grad, x.grad = x.grad.clone(), None
    with torch.autocast("cuda", dtype=torch.bfloat16):
        xb = x.to(torch.bfloat16)
        y = instance_norm(xb)
        assert F.group_norm(xb, 32).dtype == torch.float32  # what autocast alone would do
        scale = torch.ones(4, 32, device="cuda", dtype=torch.bfloat16)
        assert y.dtype == adain(xb, scale, scale * 0).dtype == torch.bfloat16
    (y.float() * w).sum().backward()
    assert (y.float() - ref).abs().max() < 0.05
    assert (x.grad - ref_grad).abs().max() < 0.05 * ref_grad.abs().max()
