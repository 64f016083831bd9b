"""The variants of the quality benchmark (benchmarks/quality.py): the `g2g` preset and its ablations, each
as `g2g train` options on top of the preset."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    change: str                 # what differs from the preset, in words
    overrides: tuple = ()       # `g2g train` options


VARIANTS = {
    "g2g": Variant("the preset as it is: arch sprite (pose content code with one refinement pass, palette "
                   "template of 2 parts whose layout code reads the image's colour edges, class encoders with global "
                   "max pooling), supervised pairs, "
                   "K = 1 class reference, class-code cross-entropy and centre loss, content probe, pose "
                   "equivariance and pose moments (rate 0.005, weight 40), the long reconstruction (the G2G cycle) "
                   "and the re-render of the mixed images from a quarter of the run on, no adversarial term"),
    "no-long": Variant("without the reassembly stage (the G2G cycle): no long reconstruction and no re-render "
                       "of the mixed images (model.loss.lambda_long 0, model.loss.lambda_rerender 0)",
                       ("--model.loss.lambda_long", "0", "--model.loss.lambda_rerender", "0")),
    "no-rerender": Variant("the long reconstruction without the re-render of the mixed images from the content "
                           "codes read back (model.loss.lambda_rerender 0)",
                           ("--model.loss.lambda_rerender", "0")),
    "+long-early": Variant("the long reconstruction from the first step instead of from a quarter of the run "
                           "(model.schedule.long_start 0)", ("--model.schedule.long_start", "0")),
    "unsupervised": Variant("without class supervision, as the original implementation trained: random "
                            "pairs, each class code from the image itself (data.supervised false), and without "
                            "the four terms that use labels (model.loss.lambda_class_code 0, "
                            "model.loss.lambda_class_centre 0, "
                            "model.loss.lambda_content_probe 0, model.loss.lambda_pose_moments 0)",
                            ("--data.supervised", "false", "--model.loss.lambda_class_code", "0",
                             "--model.loss.lambda_class_centre", "0", "--model.loss.lambda_content_probe", "0",
                             "--model.loss.lambda_pose_moments", "0")),
    "no-palette": Variant("a free colour template from the whole class code, read by one class encoder, instead "
                          "of the palette template (model.generator.n_parts 0)", ("--model.generator.n_parts", "0")),
    "sorted-layout": Variant("the layout code read from the image with each pixel's channels sorted (blind to "
                             "hue, not to brightness) instead of its colour edges "
                             "(model.generator.layout_view sorted)",
                             ("--model.generator.layout_view", "sorted")),
    "figure-layout": Variant("the layout code read from the colour edges and a figure channel (each pixel's "
                             "distance from the border's median colour: the object's area, blind to its colours) "
                             "instead of the edges alone (model.generator.layout_view figure)",
                             ("--model.generator.layout_view", "figure")),
    "mean-pool": Variant("class encoders that average their last feature map over the image instead of taking "
                         "each feature's maximum (model.generator.class_pool mean)",
                         ("--model.generator.class_pool", "mean")),
    "weak-moments": Variant("a weaker pose-moment term: running class means of rate 0.02 and weight 2.5, a pull "
                            "4 times weaker on each class's pose offset "
                            "(model.loss.pose_moment_rate 0.02, model.loss.lambda_pose_moments 2.5)",
                            ("--model.loss.pose_moment_rate", "0.02", "--model.loss.lambda_pose_moments", "2.5")),
    "no-centre": Variant("without the class-code centre loss (model.loss.lambda_class_centre 0)",
                         ("--model.loss.lambda_class_centre", "0")),
    "no-moments": Variant("without the pose-moment term (model.loss.lambda_pose_moments 0)",
                          ("--model.loss.lambda_pose_moments", "0")),
    "no-equivariance": Variant("without the pose-equivariance term (model.loss.lambda_equivariance 0)",
                               ("--model.loss.lambda_equivariance", "0")),
    "no-refine": Variant("the pose read in one pass, without re-reading it in the object's canonical view "
                         "(model.generator.n_refine 0)", ("--model.generator.n_refine", "0")),
    "no-probe": Variant("without the content probe (model.loss.lambda_content_probe 0)",
                        ("--model.loss.lambda_content_probe", "0")),
    "no-class-ce": Variant("without the cross-entropy on class codes (model.loss.lambda_class_code 0)",
                           ("--model.loss.lambda_class_code", "0")),
    "adain": Variant("the AdaIN decoder with a spatial content code instead of the sprite decoder (arch g2g; "
                     "content code 4×4×4 with noise 0.3 and L2 0.01, mlp_dim 128)",
                     ("--model.generator.arch", "g2g", "--model.generator.content_channels", "4",
                      "--model.generator.mlp_dim", "128", "--model.loss.content_noise", "0.3",
                      "--model.loss.lambda_content_l2", "0.01")),
    "K=4": Variant("class codes as the mean over K = 4 references of the class (data.k_refs 4)",
                   ("--data.k_refs", "4")),
    "+adv": Variant("with the adversarial term on mixed images, model.loss.lambda_adv 0.1, against the "
                    "preset's critic (LSGAN, PatchGAN 'basic', ndf 64, lr_d 0.001)",
                    ("--model.loss.lambda_adv", "0.1")),
}

# run by default (the others stay available through --variants)
DEFAULT_VARIANTS = ["g2g", "no-long", "unsupervised", "mean-pool", "K=4", "+adv"]
