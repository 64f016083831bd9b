"""Optimisation helpers of G2GModule: the optimizers, the check for non-finite values, gradient capping
(fixed and relative to the recent norm) and the learning-rate tail."""
from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Timer


def make_optimizer(h, params, lr: float) -> torch.optim.Optimizer:
    """The optimizer the module's hyper-parameters `h` name: h.optimizer 'adam' (betas h.beta1, h.beta2)
    or 'rmsprop', with h.weight_decay."""
    if h.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr, weight_decay=h.weight_decay)
    return torch.optim.Adam(params, lr, (h.beta1, h.beta2), weight_decay=h.weight_decay)


def nonfinite_fault(terms: dict[str, torch.Tensor], opt, named_parameters, step: int) -> str | None:
    """None when every loss term and every gradient of `opt` is finite (one device sync); else the first
    value that is not, by name, and the step."""
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    checked = [t.detach().float().reshape(1) for t in terms.values()]
    checked.append(torch.nn.utils.get_total_norm(grads, norm_type=float("inf")).reshape(1).float())
    if bool(torch.cat(checked).isfinite().all()):
        return None
    bad = [f"loss term {k!r} is {v.item()}" for k, v in terms.items() if not torch.isfinite(v).all()]
    bad += [f"gradient of {n} is not finite" for n, p in named_parameters
            if p.grad is not None and not torch.isfinite(p.grad).all()]
    return f"{(bad or ['a value'])[0]} at step {step}"


def run_progress(trainer, step: int) -> float | None:
    """Fraction of the run done: `step` of max_steps, else training time of max_time (Lightning's Timer
    callback, which a resumed run restores; rank 0's under DDP); None when the run has neither limit."""
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return step / trainer.max_steps
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    if timer is None or remaining is None:
        return None
    elapsed = timer.time_elapsed("train")
    progress = elapsed / max(elapsed + remaining, 1e-9)
    if trainer.world_size > 1:  # each rank's clock differs a little: rank 0's progress for all, so that every
        progress = trainer.strategy.broadcast(progress)  # rank sets the same rates and runs the same passes
    return progress


def tail_factor(progress: float | None, tail: float) -> float:
    """Learning-rate factor at `progress` (fraction of the run done; None: unknown) for lr_tail = `tail`:
    1 until 1 − tail, then a half cosine down to 0 at the end of the run."""
    if tail <= 0 or progress is None or progress <= 1 - tail:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min((progress - (1 - tail)) / tail, 1.0)))


SPIKE_RATE = 0.01  # weight of a step in the running mean gradient norm of clip_spike (about 100 steps)


def clip_gradients(grads: list[torch.Tensor], max_norm: float, spike: float = 0.0,
                   running: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scale gradients in place so their joint L2 norm is at most `max_norm` (0: no fixed cap) and, with
    spike > 0 and a `running` tensor, at most spike × `running`, the running mean of earlier capped norms
    (0: no mean yet, so the first step is capped by max_norm only and starts the mean). No device sync.
    Returns the norm before capping and the updated running mean (None without spike)."""
    total = torch.nn.utils.get_total_norm(grads)
    limit = torch.full_like(total, max_norm if max_norm > 0 else math.inf)
    new_running = None
    if spike > 0 and running is not None:
        started = running > 0
        limit = torch.where(started, torch.minimum(limit, spike * running), limit)
        capped = torch.minimum(total, limit)
        new_running = torch.where(started, running.lerp(capped, SPIKE_RATE), capped)
    torch._foreach_mul_(grads, (limit / (total + 1e-6)).clamp(max=1.0))
    return total, new_running
