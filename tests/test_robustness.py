"""Bad input everywhere a user can give it (the cases are in robustness_cases.py; benchmarks/robustness.py
runs the same cases and writes docs/robustness.md): every case must end in one `error:` line and a
non-zero exit, or be handled. Then property-based fuzzing (hypothesis) of the image loader and `g2g swap`."""
import io
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from g2g.cli import main
from g2g.data.datasets import load_image
from g2g.inference import export_generator
from g2g.networks.generator import Generator, generator_config
from helpers import TINY
from robustness_cases import CASES, Case, build_material, check, rgb_image, run_case


@pytest.fixture(scope="module")
def material(tmp_path_factory, tiny_run):
    return build_material(tmp_path_factory.mktemp("robustness"), tiny_run.ckpt)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, material):
    check(case, material, run_case(case, material))


def test_there_are_enough_cases():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


# --- fuzzing -------------------------------------------------------------------------------------


@contextmanager
def _no_hang(seconds: int):
    """Fail instead of hanging: SIGALRM raises inside whatever is running."""
    def alarm(*_):
        raise TimeoutError(f"hung for more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]


def _valid_images() -> dict[str, bytes]:
    """One small valid image file per format: what mutated_images starts from."""
    out = {}
    for fmt in FORMATS:
        buf = io.BytesIO()
        rgb_image(0, size=(9, 7)).save(buf, format=fmt)
        out[fmt] = buf.getvalue()
    return out


VALID = _valid_images()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    """Where fuzzed bytes are written as files (each removed after its example)."""
    return tmp_path_factory.mktemp("fuzz")


@st.composite
def mutated_images(draw) -> bytes:
    """A valid small image file with a few bytes changed and maybe cut short."""
    data = bytearray(VALID[draw(st.sampled_from(FORMATS))])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]


@st.composite
def random_images(draw) -> bytes:
    """A random small image in a random mode, saved in a random format that takes that mode."""
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(-2**31, 2**31 - 1, (h, w)).astype(np.int32))
    elif mode == "F":
        img = Image.fromarray((rng.standard_normal((h, w)) * draw(st.sampled_from([1.0, 1e3]))).astype(np.float32))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # this format cannot hold this mode
    return buf.getvalue()


def _write(data: bytes, folder: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=folder, suffix=".img")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


def _load_or_refuse(data: bytes, folder: Path) -> torch.Tensor | None:
    path = _write(data, folder)
    try:
        x = load_image(path, 16)
    except ValueError as e:
        assert str(e).startswith(f"cannot read image {path}: ") and "\n" not in str(e), str(e)
        return None
    finally:
        path.unlink()
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    return x


def fuzz(examples: int) -> settings:
    """Few examples (CI budget), no deadline (an example's time depends on the machine; _no_hang catches
    a hang); no example database on disk."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@fuzz(300)
@given(st.one_of(st.binary(max_size=3000), mutated_images()))
def test_fuzz_image_loader_never_crashes(fuzz_dir, data):
    with _no_hang(30):
        _load_or_refuse(data, fuzz_dir)


@fuzz(200)
@given(random_images())
def test_fuzz_any_small_image_in_any_mode_loads(fuzz_dir, data):
    with _no_hang(30):
        assert _load_or_refuse(data, fuzz_dir) is not None


@pytest.fixture(scope="module")
def fuzz_model(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("fuzz_model")
    rgb_image(3).save(root / "ok.png")
    return export_generator(Generator(generator_config(**TINY)).eval(), root / "model.safetensors"), root / "ok.png"


@pytest.mark.filterwarnings("ignore")
def test_fuzz_swap_never_shows_a_traceback(fuzz_model, fuzz_dir):
    model, good = fuzz_model

    @fuzz(80)
    @given(st.one_of(st.binary(max_size=2000), mutated_images(), random_images()))
    def swap(data):
        path = _write(data, fuzz_dir)
        out, err = path.with_suffix(".out"), io.StringIO()
        try:
            with _no_hang(30), redirect_stderr(err), redirect_stdout(io.StringIO()):
                rc = main(["swap", str(path), str(good), "--model", str(model), "--out", str(out)])
            made = (out / "panel.png").is_file()
        finally:
            path.unlink()
            shutil.rmtree(out, ignore_errors=True)
        text = err.getvalue()
        if rc == 0:
            assert text == "" and made
        else:
            assert rc == 2 and text.startswith("g2g: error: cannot read image ") and text.count("\n") == 1, text

    swap()

