"""Fixtures: a tiny generator config, a tiny training run shared by the tests that only read it, and a
fixed random state at the start of every test (so that tests pass in any order). Helpers that tests
import are in helpers.py."""
import os
import random
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from g2g.networks.generator import ArchConfig, generator_config  # noqa: E402
from helpers import MODULE_KWARGS, TINY, fit_tiny, make_module  # noqa: E402

torch.set_num_threads(1)


HYPOTHESIS_HOME = pytest.StashKey[Path]()
INDEX_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """Hypothesis keeps its caches (written from collection on) in a temporary folder, not in the checkout;
    so do folder indexes (never in the user's ~/.cache)."""
    from hypothesis.configuration import set_hypothesis_home_dir
    config.stash[INDEX_CACHE] = os.environ["G2G_CACHE_DIR"] = tempfile.mkdtemp(prefix="g2g-cache-")
    config.stash[HYPOTHESIS_HOME] = Path(tempfile.mkdtemp(prefix="g2g-hypothesis-"))
    set_hypothesis_home_dir(config.stash[HYPOTHESIS_HOME])


def pytest_unconfigure(config):
    shutil.rmtree(config.stash.get(HYPOTHESIS_HOME, ""), ignore_errors=True)
    shutil.rmtree(config.stash.get(INDEX_CACHE, ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def _fixed_random_state(monkeypatch):
    """Every test starts from the same global random state, whatever ran before it (`g2g train` seeds
    Lightning, which keeps the seed in an environment variable)."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> ArchConfig:
    """A 16 px generator of a few thousand parameters: content code (2, 4, 4), class code (8,)."""
    return generator_config(**TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One 2-step training run shared by the tests that only read it: initial state dict, module, trainer
    and the checkpoint written at step 2."""
    root = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in
               make_module(generator=generator_config(**TINY), **MODULE_KWARGS).state_dict().items()}
    module, trainer = fit_tiny(root, max_steps=2, save_to=root / "step2.ckpt")
    return SimpleNamespace(initial=initial, module=module, trainer=trainer, ckpt=root / "step2.ckpt")


@pytest.fixture
def fit():
    """`fit(root, max_steps, ckpt_path=None, save_to=None, steps_per_epoch=2, **module_overrides)`."""
    return fit_tiny
