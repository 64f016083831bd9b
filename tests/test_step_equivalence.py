"""The optimised training step (batched encodes and decodes, channels-last) computes what a plain
per-call implementation of the G2G objective computes: the same loss terms and the same gradients."""
import copy

import torch
import torch.nn.functional as F

from helpers import MODULE_KWARGS, TINY, make_module
from g2g.module import G2GModule
from g2g.networks.generator import generator_config

KWARGS = {**MODULE_KWARGS, "lambda_content_cycle": 1.0, "lambda_long": 1.0, "lambda_short": 1.0, "lambda_rerender": 1.0}


def batch(b: int = 3, k: int = 2, size: int = 16) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"x1": torch.rand(b, 3, size, size, generator=g) * 2 - 1,
            "x2": torch.rand(b, 3, size, size, generator=g) * 2 - 1,
            "ref1": torch.rand(b, k, 3, size, size, generator=g) * 2 - 1,
            "ref2": torch.rand(b, k, 3, size, size, generator=g) * 2 - 1,
            "y1": torch.randint(MODULE_KWARGS["num_classes"], (b,), generator=g),
            "y2": torch.randint(MODULE_KWARGS["num_classes"], (b,), generator=g)}


def reference_terms(m: G2GModule, x: dict) -> tuple[dict, dict]:
    """The G2G objective written out one network call per image set, nothing batched."""
    gen, h, b = m.generator, m.loss, x["x1"].shape[0]
    noise = m.step_generator()  # the step's noise: content codes of (x1, x2), then of (m1, m2)

    def class_code(refs):  # mean class code over the K references, one reference at a time
        return torch.stack([gen.encode_class(refs[:, i]) for i in range(refs.shape[1])]).mean(0)

    a1, a2 = gen.encode_content(x["x1"]), gen.encode_content(x["x2"])
    b1, b2 = class_code(x["ref1"]), class_code(x["ref2"])
    n1, n2 = (h.content_noise * torch.randn((2 * b, *a1.shape[1:]), generator=noise)).split(b)
    m1, m2 = gen.decode(a1 + n1, b2), gen.decode(a2 + n2, b1)
    x1_hat, x2_hat = gen.decode(a1 + n1, b1), gen.decode(a2 + n2, b2)
    a_m1, a_m2 = gen.encode_content(m1), gen.encode_content(m2)
    b_m1, b_m2 = gen.encode_class(m1), gen.encode_class(m2)
    n1, n2 = (h.content_noise * torch.randn((2 * b, *a1.shape[1:]), generator=noise)).split(b)
    r1, r2 = gen.decode(a_m1 + n1, b_m2), gen.decode(a_m2 + n2, b_m1)
    q1, q2 = gen.decode(a_m1 + n1, b2), gen.decode(a_m2 + n2, b1)  # mixed images redrawn from their content codes

    D, C = m.discriminator, m.class_critic
    d = {"d_adv": 0.5 * (((D(x["x1"]) - 1) ** 2).mean() / 2 + ((D(x["x2"]) - 1) ** 2).mean() / 2
                         + (D(m1.detach()) ** 2).mean() / 2 + (D(m2.detach()) ** 2).mean() / 2),
         "d_class": (F.cross_entropy(C(x["x1"]), x["y1"]) + F.cross_entropy(C(x["x2"]), x["y2"])) / 2}
    l1 = lambda p, t: (p - t).abs().mean()  # noqa: E731
    sq = lambda p, t: ((p - t) ** 2).mean()  # noqa: E731
    g = {"short": h.lambda_short * (l1(x1_hat, x["x1"]) + l1(x2_hat, x["x2"])),
         "long": h.lambda_long * (l1(r1, x["x1"]) + l1(r2, x["x2"])),
         "rerender": h.lambda_rerender * (l1(q1, m1.detach()) + l1(q2, m2.detach())),
         "content_cycle": h.lambda_content_cycle * (sq(a_m1, a1) + sq(a_m2, a2)),
         "class_cycle": h.lambda_class_cycle * (sq(b_m1, b2) + sq(b_m2, b1)),
         "content_l2": h.lambda_content_l2 * ((a1 ** 2).mean() + (a2 ** 2).mean()),
         "class": h.lambda_class * (F.cross_entropy(C(m1), x["y2"]) + F.cross_entropy(C(m2), x["y1"])) / 2,
         "adv": h.lambda_adv * (((D(m1) - 1) ** 2).mean() + ((D(m2) - 1) ** 2).mean()) / 2}
    return d, g


def optimised_terms(m: G2GModule, x: dict) -> tuple[dict, dict]:
    res = m.forward_pass(x)
    return m.critic_terms(x, res), m.generator_terms(x, res)


def losses_and_grads(m: G2GModule, terms) -> tuple[dict, dict, dict]:
    """Loss terms, critic gradients of the critic loss, generator gradients of the generator loss (critics
    frozen), as the training step takes them."""
    d_terms, _ = terms(m, batch())
    critics = [c for c in (m.discriminator, m.class_critic)]
    d_grads = torch.autograd.grad(sum(d_terms.values()), [p for c in critics for p in c.parameters()])
    for c in critics:
        c.requires_grad_(False)
    _, g_terms = terms(m, batch())
    g_grads = torch.autograd.grad(sum(g_terms.values()), list(m.generator.parameters()))
    for c in critics:
        c.requires_grad_(True)
    return {**d_terms, **g_terms}, d_grads, g_grads


def test_optimised_step_matches_plain_reference():
    torch.manual_seed(0)
    plain = make_module(generator=generator_config(**TINY), **KWARGS)
    fast = copy.deepcopy(plain)
    fast.hparams.channels_last = True
    fast.on_fit_start()  # channels-last networks and inputs, as in training
    ref_terms, ref_d, ref_g = losses_and_grads(plain, reference_terms)
    opt_terms, opt_d, opt_g = losses_and_grads(fast, optimised_terms)
    assert set(opt_terms) <= set(ref_terms) and {"short", "long", "rerender", "adv", "class", "d_adv", "d_class"} <= set(opt_terms)
    for k in opt_terms:
        torch.testing.assert_close(opt_terms[k], ref_terms[k], rtol=1e-5, atol=1e-6, msg=k)
    for name, ref, opt in (("critic", ref_d, opt_d), ("generator", ref_g, opt_g)):
        assert len(ref) == len(opt) and all(r.abs().sum() > 0 for r in ref[:1])
        for i, (r, o) in enumerate(zip(ref, opt)):
            # float tolerance on the tensor's scale: the channels-last kernels sum in another order, so an
            # element near zero can differ by ~1e-6 of the largest one; a wrong path differs by O(1)
            atol = max(1e-6, 1e-5 * r.abs().max().item())
            torch.testing.assert_close(o, r, rtol=1e-4, atol=atol, msg=f"{name} gradient {i}")


def test_upsampling_convolution_equals_upsample_then_convolve():
    """FUNIT's decoder convolves the nearest-upsampled map with a 5×5 reflect-padded kernel; the
    polyphase form (3×3 on the low-resolution map, exact borders) gives the same values and gradients."""
    from g2g.networks.blocks import upsample2x
    from g2g.networks.funit import reflect_conv as _conv, upsample_conv5

    torch.manual_seed(0)
    for c, h, w in [(8, 2, 2), (8, 3, 3), (8, 5, 7), (6, 2, 9), (16, 16, 16)]:
        conv = _conv(c, c // 2, 5).double()
        x = torch.randn(2, c, h, w, dtype=torch.double, requires_grad=True)
        ref, out = conv(upsample2x(x)), upsample_conv5(x, conv)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        g = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(out, [x, *conv.parameters()], g),
                        torch.autograd.grad(ref, [x, *conv.parameters()], g)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_adain_equals_instance_norm_then_affine():
    """adain (group norm, then one fused multiply-add) equals FUNIT's instance norm followed by the affine
    map, values and gradients, in both memory formats."""
    import torch.nn.functional as F

    from g2g.networks.blocks import adain
    torch.manual_seed(0)
    for channels_last in (False, True):
        x = torch.randn(3, 5, 7, 6, dtype=torch.double, requires_grad=True)
        scale, bias = (torch.randn(3, 5, dtype=torch.double, requires_grad=True) for _ in range(2))
        inp = x.to(memory_format=torch.channels_last) if channels_last else x
        out = adain(inp, scale, bias)
        ref = F.instance_norm(x, eps=1e-5) * scale[:, :, None, None] + bias[:, :, None, None]
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        g = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(out, [x, scale, bias], g), torch.autograd.grad(ref, [x, scale, bias], g)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
