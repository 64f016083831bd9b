"""What the page asks of the model, one method per JSON endpoint: parsed request in, JSON-able dict of
PNG data URLs out. User mistakes raise a one-line ValueError that the page shows."""
from __future__ import annotations

import threading
from typing import Any

import torch

from ..inference import G2GModel
from .images import png_data_url, read_upload, read_uploads

DATASETS = ("shapes", "digits")  # the built-in data the page can draw images from
MAX_REFERENCES = 16   # files of image 1 or image 2: K images of its class
MAX_GRID = 8          # images of a class × content grid
MAX_STEPS = 16        # images of an interpolation strip
MAX_RANDOM = 8        # images drawn at once


def _listed(upload: Any) -> Any:
    """One upload (a dict) as a list of one; anything else as it is, for `read_uploads` to check."""
    return [upload] if isinstance(upload, dict) else upload


def _int(request: dict, key: str, default: int, low: int, high: int) -> int:
    value = request.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, not {value!r}")
    return value


class App:
    """The model behind the page, its name, and the built-in datasets (built on first use)."""

    def __init__(self, model: G2GModel, name: str, data: str = "shapes"):
        if data not in DATASETS:
            raise ValueError(f"data must be one of {', '.join(DATASETS)}, not {data!r}")
        self.model, self.name, self.data = model, name, data
        self.size, self.crop = model.config.image_size, model.config.crops
        self._lock = threading.Lock()  # one model call at a time; the server answers requests in threads
        self._datasets: dict[str, Any] = {}

    def info(self) -> dict:
        return {"model": self.name, "arch": self.model.config.arch, "image_size": self.size,
                "data": self.data, "datasets": list(DATASETS), "max_references": MAX_REFERENCES,
                "max_grid": MAX_GRID, "max_steps": MAX_STEPS}

    def _read(self, upload: Any, what: str) -> torch.Tensor:
        return read_upload(upload, what, self.size, self.crop)[None]  # (1, 3, H, W)

    def swap(self, request: dict) -> dict:
        """{"x1": [upload, ...], "x2": [upload, ...]} (one upload alone for an image also works) → x1, x2 as
        the model sees them and m1, m2, r1, r2 of `G2GModel.swap` on the first file of each; with K > 1
        image-2 files also "m1_k" (`_mixed`: x1's content with the mean class code of the K files), and
        with more than one image-1 file "m2_k" likewise."""
        x1, x2 = (read_uploads(_listed(request.get(key)), what, self.size, self.crop, 1, MAX_REFERENCES)
                  for key, what in (("x1", "image 1"), ("x2", "image 2")))  # (K1, 3, H, W), (K2, 3, H, W)
        with self._lock:
            res = self.model.swap(x1[:1], x2[:1])
            out = {"x1": x1[:1], "x2": x2[:1], "m1": res.m1, "m2": res.m2, "r1": res.r1, "r2": res.r2}
            if len(x2) > 1:
                out["m1_k"] = self._mixed(x1, x2)
            if len(x1) > 1:
                out["m2_k"] = self._mixed(x2, x1)
        return {**{k: png_data_url(v) for k, v in out.items()}, "k": len(x2), "k1": len(x1)}

    def _mixed(self, content: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """The first of `content` (N, 3, H, W) drawn with the mean class code of `references` (K, 3, H, W)
        (`encode_class` of a (1, K, 3, H, W) batch). A centred model (`content_centre`) centres the content
        code on the other N − 1 images, which show the same class; with N = 1 on its training mean."""
        others = content[None, 1:] if len(content) > 1 else None  # (1, N − 1, 3, H, W)
        code, _ = self.model.encode(content[:1], others)
        return self.model.decode(code, self.model.encode_class(references[None]))

    def grid(self, request: dict) -> dict:
        """{"images": [upload, ...]} → one PNG: a header row of the images (content), a header column
        of the images (class), and cell (i, j) = content of image j drawn with the class of image i."""
        x = read_uploads(request.get("images"), "grid image", self.size, self.crop, 2, MAX_GRID)  # (N, 3, H, W)
        n = len(x)
        with self._lock:
            cells = self.model.grid(x).cpu()  # (N, N, 3, H, W)
        blank = torch.ones_like(x[:1])  # white corner
        rows = [torch.cat([blank, x])] + [torch.cat([x[i:i + 1], cells[i]]) for i in range(n)]
        return {"grid": png_data_url(torch.cat(rows), nrow=n + 1, padding=2), "n": n}

    def interpolate(self, request: dict) -> dict:
        """{"a": upload, "b": upload, "steps": int} → a strip: the content of a with the class code
        blended linearly from a's to b's (`G2GModel.interpolate(..., code="class")`)."""
        a, b = self._read(request.get("a"), "image 1"), self._read(request.get("b"), "image 2")
        steps = _int(request, "steps", 8, 2, MAX_STEPS)
        with self._lock:
            strip = self.model.interpolate(a, b, steps, code="class")  # (steps, 3, H, W)
        return {"strip": png_data_url(strip, nrow=steps, padding=2), "steps": steps}

    def _dataset(self, name: str):
        if name not in DATASETS:
            raise ValueError(f"data must be one of {', '.join(DATASETS)}, not {name!r}")
        with self._lock:
            if name not in self._datasets:
                from ..data.datamodule import make_dataset
                self._datasets[name] = make_dataset(name, "test", self.size)
            return self._datasets[name]

    def random(self, request: dict) -> dict:
        """{"data": "shapes"|"digits", "count": n, "seed": optional int} → n test images of n different
        classes (while there are enough), as PNG files the page then uploads like any other."""
        data = request.get("data", self.data)
        count = _int(request, "count", 2, 1, MAX_RANDOM)
        dataset = self._dataset(data)
        seed = request.get("seed")
        generator = torch.Generator()
        if isinstance(seed, int) and not isinstance(seed, bool):
            generator.manual_seed(seed)
        else:
            generator.seed()
        labels = dataset.labels  # (N,)
        classes = labels.unique()
        chosen = classes[torch.randperm(len(classes), generator=generator)[:count]]
        chosen = chosen.repeat((count + len(chosen) - 1) // len(chosen))[:count]
        images = []
        for c in chosen.tolist():  # a random test image of each chosen class
            index = (labels == c).nonzero().flatten()
            i = int(index[torch.randint(len(index), (1,), generator=generator)])
            label = dataset.class_names[c].replace("/", "-")  # shapes' names are shape/colours
            images.append({"name": f"{data}-test-{i}-{label}.png",
                           "data": png_data_url(dataset[i][0])})
        return {"images": images}
