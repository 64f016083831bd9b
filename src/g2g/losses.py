"""Loss terms as small pure functions, one per variant. The training step weights them by
`lambda_<term>` and logs each under its name."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def reconstruction(pred: torch.Tensor, target: torch.Tensor, edges: float = 0.0, pyramid: float = 0.0
                   ) -> torch.Tensor:
    """L1 of (B, C, H, W) maps; `edges` weighs the L1 of the error's differences between vertical and
    horizontal neighbours (an edge in the wrong place costs twice), `pyramid` the L1 at ½ and ¼ of the side
    (average-pooled: the shape before the strokes)."""
    out = l1(pred, target)
    if edges:
        d = pred - target
        out = out + edges * ((d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., 1:] - d[..., :-1]).abs().mean())
    if pyramid:
        for f in (2, 4):
            out = out + pyramid * l1(F.avg_pool2d(pred, f, ceil_mode=True), F.avg_pool2d(target, f, ceil_mode=True))
    return out


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean()


def code_cycle(recovered: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """‖E(x) − E(m)‖², mean over elements: the code recovered from a mixed image should equal the code
    that was put into it (L_cyc,A for content codes, L_cyc,B for class codes)."""
    return mse(recovered, original)


def content_contrast(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                     tau: float) -> torch.Tensor:
    """InfoNCE: each query (N, D) should be nearer its positive (N, D) than its K negatives (N, K, D), by
    cosine similarity / tau: the cross-entropy of picking the positive among the 1 + K."""
    q, p, n = F.normalize(query, dim=1), F.normalize(positive, dim=1), F.normalize(negatives, dim=2)
    logits = torch.cat([(q * p).sum(1, keepdim=True), torch.einsum("nd,nkd->nk", q, n)], 1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def nearest_other(query: torch.Tensor, labels: torch.Tensor, pool: torch.Tensor,
                  pool_labels: torch.Tensor) -> torch.Tensor:
    """For each query (N, D) of class labels (N,), the code in pool (M, D) of another class (pool_labels
    (M,); a label < 0 marks an empty slot, never picked) with the highest cosine similarity: the positive of
    lambda_content_match. (N, D)"""
    sim = F.normalize(query, dim=1) @ F.normalize(pool, dim=1).T
    sim = sim.masked_fill((labels[:, None] == pool_labels[None, :]) | (pool_labels[None, :] < 0), float("-inf"))
    return pool[sim.argmax(1)]


def activation_l2(code: torch.Tensor) -> torch.Tensor:
    """LORD's activation decay on content codes: together with additive noise, it bounds how much
    information the content code can carry."""
    return code.pow(2).mean()


def feature_matching(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """FUNIT's feature matching: L1 between discriminator features (B, F, h, w) averaged over space."""
    return l1(features.mean(dim=(2, 3)), target.mean(dim=(2, 3)))


def linear_warmup(step: int, start: int, length: int) -> float:
    """A loss weight's factor: 0 before `start`, rising linearly to 1 over the next `length` steps, then 1
    (the original implementation's identity-loss weight: δ_min for some epochs, then a linear rise to δ_max)."""
    if length <= 0:
        return float(step >= start)
    return min(max((step - start) / length, 0.0), 1.0)


def class_consistency(logits: torch.Tensor, target_class: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a class critic's logits on mixed images against the class they should show."""
    return F.cross_entropy(logits, target_class)


def confusion(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a probe's logits against the uniform distribution over classes: minimal (log n)
    when the probe cannot tell the classes apart; the encoder minimises it against a probe that learns."""
    return -F.log_softmax(logits, dim=1).mean()


# ---- adversarial objectives: d_* for the discriminator, g_* for the generator ----

def d_lsgan_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def g_lsgan_loss(fake: torch.Tensor) -> torch.Tensor:
    return (fake - 1).pow(2).mean()


def d_vanilla_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


def g_vanilla_loss(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def d_hinge_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())


def g_hinge_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def d_wgan_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()


g_wgan_loss = g_hinge_loss  # both maximise the critic's score of fakes

GAN_LOSSES = {
    "lsgan": (d_lsgan_loss, g_lsgan_loss),
    "vanilla": (d_vanilla_loss, g_vanilla_loss),
    "hinge": (d_hinge_loss, g_hinge_loss),
    "wgangp": (d_wgan_loss, g_wgan_loss),
}


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: (‖∇D(x̃)‖₂ − 1)² at random interpolates x̃ of real and fake images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real)
    mix = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(real_scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1: ½‖∇D(x)‖² on real images (`real` must require grad when D is evaluated)."""
    (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(dim=1).mean()


def r1_penalty_funit(real_scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """FUNIT's R1 (`calc_grad2`): ‖∇ₓ mean(D(x))‖² summed, divided by the batch size. The gradient of the
    mean over all N = B·h·w scores makes it 2/N² times `r1_penalty`: FUNIT's weight 10 means this one."""
    (grad,) = torch.autograd.grad(real_scores.mean(), real, create_graph=True)
    return grad.pow(2).sum() / real.shape[0]


def running_class_means(values: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, seen: torch.Tensor,
                        rate: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of per-class running means: a class of the batch gets (1 − rate) · old + rate · batch mean
    (rate 1 the first time). values (B, D), labels (B,), means (K, D), seen (K,) bool: classes met so far.
    Returns (the updated means of the batch's classes, with gradient through the batch means; all K means,
    detached; the new seen)."""
    counts = torch.bincount(labels, minlength=len(means))
    present = counts > 0
    sums = values.new_zeros(means.shape).index_add(0, labels, values)
    weight = torch.where(seen[present], rate, 1.0)[:, None]
    updated = (1 - weight) * means[present] + weight * sums[present] / counts[present, None]
    new_means = means.clone()
    new_means[present] = updated.detach()
    return updated, new_means, seen | present


CENTRE_RATE = 0.02  # weight of a batch in the running class centres (about 50 batches)


def class_centre(codes: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, seen: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The centre loss of Wen et al. (ECCV 2016): mean squared distance ‖b − c_y‖² of each class code from
    its class's running centre. What varies within a class is content, so this drives content out of the
    class code; the class-code cross-entropy keeps the centres apart. (A scale-free form, divided by the
    spread of the centres, collapsed training on `shapes`: the centres start close together, so its
    gradient was huge early and took over the clipped update.)

    codes (B, D), labels (B,); centres (K, D): running mean code of each class (`running_class_means`, rate
    CENTRE_RATE), seen (K,) bool: classes met so far. The gradient goes through the codes only. Returns
    (loss, new centres, new seen), the last two detached."""
    _, new_centres, new_seen = running_class_means(codes.detach(), labels, centres, seen, CENTRE_RATE)
    within = (codes - new_centres[labels]).pow(2).sum(dim=1).mean()
    return within, new_centres, new_seen
