"""benchmarks/code_probes.py: the CNN probe reads a character planted in its input and only chance from an
input that holds none; the script's figures on a tiny model and DejaVu/STIX fonts."""
import sys
from pathlib import Path

import pytest
import torch

from helpers import copy_test_fonts, tiny_model_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import code_probes as cp  # noqa: E402

def planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 8, 8) noise with one bright pixel whose place is the label (4 labels)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    x[torch.arange(n), 0, 2 * y, 2 * y] += 3.0
    return x, y


def test_the_probe_reads_a_planted_character_and_only_chance_from_nothing():
    (fit_x, fit_y), (read_x, read_y) = planted(256, 0), planted(128, 1)
    read = cp.fit_and_read(fit_x, fit_y, read_x, read_y, 4, steps=150, seed=0)
    assert read["held-out fonts"] > 0.95 and read["training fonts"] > 0.95
    blank = cp.fit_and_read(torch.zeros_like(fit_x), fit_y, torch.zeros_like(read_x), read_y, 4, steps=30, seed=0)
    assert blank["held-out fonts"] == pytest.approx(0.25)  # one answer for every input: each label once in 4


def test_the_script_reports_the_code_and_the_pixels_of_both_splits(tmp_path, capsys):
    copy_test_fonts(tmp_path)
    model = tiny_model_file(tmp_path / "model.safetensors")
    out = cp.main([str(model), "--root", str(tmp_path), "--steps", "20"])
    assert out["chance"] == pytest.approx(1 / 52)
    for source in ("code", "pixels"):
        assert set(out[source]) == {"held-out fonts", "training fonts"}
        assert all(0 <= v <= 1 for v in out[source].values())
    assert '"held-out fonts"' in capsys.readouterr().out
