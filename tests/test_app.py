"""`g2g app` at the HTTP level (no browser): the server on a free loopback port answers the page's JSON
requests with exactly what `G2GModel` gives on the same files, refuses bad uploads with 400 and one
line, and keeps serving."""
import base64
import http.client
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from g2g.app import make_server
from g2g.app.api import App
from g2g.cli import build_parser
from g2g.inference import G2GModel, load
from g2g.networks.generator import Generator, generator_config
from helpers import TINY, decode, quantised, read, tiny_model_file




@pytest.fixture
def served(tmp_path):
    model = load(tiny_model_file(tmp_path / "model.safetensors"))
    server = make_server(model, "tiny", port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=server.url, model=model, server=server)
    server.shutdown()
    server.server_close()
    thread.join()


def post(url: str, path: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url + path.lstrip("/"), data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url + path.lstrip("/"), timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def write_image(path, size=(20, 24), mode="RGB", seed=0, fmt=None):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if mode == "I;16":
        img = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    elif mode == "P":
        img = img.quantize(16)
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def upload(path) -> dict:
    return {"name": path.name, "data": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()}








def test_swap_equals_the_model_on_the_same_files(served, tmp_path):
    p1, p2 = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", (30, 17), seed=2)
    status, out = post(served.url, "/api/swap", {"x1": upload(p1), "x2": [upload(p2)]})
    assert status == 200, out
    x = read([p1, p2], served.model)
    res = served.model.swap(x[:1], x[1:])
    expected = {"x1": x[:1], "x2": x[1:], "m1": res.m1, "m2": res.m2, "r1": res.r1, "r2": res.r2}
    for key, value in expected.items():
        assert np.array_equal(decode(out[key]), quantised(value)), key
    assert out["k"] == 1 and "m1_k" not in out


def test_k_references_give_m1_the_mean_class_code(served, tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(4)]
    status, out = post(served.url, "/api/swap", {"x1": upload(paths[0]), "x2": [upload(p) for p in paths[1:]]})
    assert status == 200, out
    x, model = read(paths, served.model), served.model
    m1_k = model.decode(model.encode(x[:1])[0], model.encode_class(x[None, 1:]))  # (1, K=3, 3, H, W) references
    assert out["k"] == 3
    assert np.array_equal(decode(out["m1_k"]), quantised(m1_k))
    assert np.array_equal(decode(out["m1"]), quantised(model.swap(x[:1], x[1:2]).m1))


def test_image_1_files_give_m2_the_mean_class_code(served, tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(5)]
    payload = {"x1": [upload(p) for p in paths[:3]], "x2": [upload(p) for p in paths[3:]]}
    status, out = post(served.url, "/api/swap", payload)
    assert status == 200, out
    x, model = read(paths, served.model), served.model
    m2_k = model.decode(model.encode(x[3:4])[0], model.encode_class(x[None, :3]))
    m1_k = model.decode(model.encode(x[:1])[0], model.encode_class(x[None, 3:]))
    assert out["k1"] == 3 and out["k"] == 2
    assert np.array_equal(decode(out["m2_k"]), quantised(m2_k))
    assert np.array_equal(decode(out["m1_k"]), quantised(m1_k))
    assert np.array_equal(decode(out["m2"]), quantised(model.swap(x[:1], x[3:4]).m2))


def test_centred_model_centres_each_swapped_image_on_the_other_files_of_its_image():
    gen = Generator(generator_config(**{**TINY, "content_norm": True, "content_centre": True})).eval()
    gen.content_mean.normal_()                        # a training mean unlike any centre of these images
    model = G2GModel(gen)
    app = App(model, "centred")
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    mixed = app._mixed(x[:3], x[3:])                  # content of x[0] with its own class shown by x[1:3]
    centred = model.decode(model.encode(x[:1], x[None, 1:3])[0], model.encode_class(x[None, 3:]))
    alone = model.decode(model.encode(x[:1])[0], model.encode_class(x[None, 3:]))
    torch.testing.assert_close(mixed, centred)
    assert not torch.allclose(mixed, alone)                # one file: the training mean instead
    torch.testing.assert_close(app._mixed(x[:1], x[3:]), alone)


def test_grid_and_interpolation_equal_the_model(served, tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    x, model = read(paths, served.model), served.model
    status, out = post(served.url, "/api/grid", {"images": [upload(p) for p in paths]})
    assert status == 200, out
    grid = decode(out["grid"])  # (N + 1) × (N + 1) tiles of 16 px, 2 px apart
    assert grid.shape == (4 * 18 + 2, 4 * 18 + 2, 3)
    cells = model.grid(x)

    def tile(i, j):
        return grid[2 + 18 * i:18 * (i + 1), 2 + 18 * j:18 * (j + 1)]
    assert np.array_equal(tile(0, 2), quantised(x[1])) and np.array_equal(tile(2, 0), quantised(x[1]))
    assert all(np.array_equal(tile(i + 1, j + 1), quantised(cells[i, j])) for i in range(3) for j in range(3))

    status, out = post(served.url, "/api/interpolate", {"a": upload(paths[0]), "b": upload(paths[1]), "steps": 5})
    assert status == 200, out
    strip = decode(out["strip"])
    expected = model.interpolate(x[:1], x[1:2], 5, code="class")
    assert strip.shape == (20, 5 * 18 + 2, 3)
    assert all(np.array_equal(strip[2:18, 2 + 18 * k:18 * (k + 1)], quantised(expected[k])) for k in range(5))


@pytest.mark.parametrize("data", ["shapes", "digits"])
def test_random_images_come_from_the_built_in_test_split(served, data):
    status, out = post(served.url, "/api/random", {"data": data, "count": 2, "seed": 3})
    assert status == 200, out
    assert [decode(im["data"]).shape for im in out["images"]] == [(16, 16, 3)] * 2
    assert post(served.url, "/api/random", {"data": data, "count": 2, "seed": 3})[1] == out  # seeded
    status, swapped = post(served.url, "/api/swap", {"x1": out["images"][0], "x2": out["images"][1:]})
    assert status == 200, swapped


def _bad_requests(tmp_path) -> dict:
    good = upload(write_image(tmp_path / "good.png"))
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    png = (tmp_path / "good.png").read_bytes()
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png[: len(png) // 2])
    wide = tmp_path / "wide.png"
    Image.new("L", (4100, 100)).save(wide)
    huge = {"name": "huge.bmp", "data": base64.b64encode(bytes(21 * 2**20)).decode()}
    return {  # request → words the message must contain
        "text file": ({"x1": upload(text), "x2": [good]}, "notes.txt is not an image"),
        "truncated": ({"x1": good, "x2": [upload(truncated)]}, "cut.png"),
        "over 20 MB": ({"x1": huge, "x2": [good]}, "over the limit of 20 MB"),
        "over 4096 px": ({"x1": good, "x2": [upload(wide)]}, "over the limit of 4096 px"),
        "not base64": ({"x1": {"name": "x.png", "data": "data:image/png;base64,@@@"}, "x2": [good]}, "not base64"),
        "no image 2": ({"x1": good}, "image 2"),
        "empty among image-1 files": ({"x1": [good, {"name": "x.png"}], "x2": [good]}, "image 1, file 2: no image"),
        "one image-1 file": ({"x1": [{}], "x2": [good]}, "image 1: no image"),
        "no JSON": (b"hello", "not JSON"),
        "too many steps": ({"a": good, "b": good, "steps": 99}, "steps"),
    }


def test_bad_uploads_get_400_and_one_line_and_the_server_keeps_serving(served, tmp_path):
    paths = {"too many steps": "/api/interpolate"}
    for case, (payload, words) in _bad_requests(tmp_path).items():
        status, out = post(served.url, paths.get(case, "/api/swap"), payload)
        assert status == 400, (case, out)
        assert words in out["error"] and "\n" not in out["error"], (case, out)
        assert get(served.url, "/api/info")[0] == 200, case
    host, port = served.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=120)  # a body announced but never sent
    conn.putrequest("POST", "/api/swap")
    conn.putheader("Content-Length", str(2**31))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 400 and "over the limit" in json.loads(response.read())["error"]
    conn.close()
    assert get(served.url, "/api/info")[0] == 200


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("I;16", "PNG"), ("P", "PNG"), ("RGBA", "PNG"),
                                       ("LA", "PNG")])
def test_image_modes_are_converted_as_g2g_swap_converts_them(served, tmp_path, mode, fmt):
    path = write_image(tmp_path / f"odd.{fmt.lower()}", mode=mode, fmt=fmt)
    status, out = post(served.url, "/api/swap", {"x1": upload(path), "x2": [upload(path)]})
    assert status == 200, out
    assert np.array_equal(decode(out["x1"]), quantised(read([path], served.model)))


def test_page_and_its_files_are_served(served):
    assert b"<title>G2G</title>" in get(served.url, "/")[1]
    assert get(served.url, "/app.js")[0] == 200 and get(served.url, "/style.css")[0] == 200
    assert get(served.url, "/secret")[0] == 404
    info = json.loads(get(served.url, "/api/info")[1])
    assert info["model"] == "tiny" and info["image_size"] == 16 and info["datasets"] == ["shapes", "digits"]


def test_binds_to_loopback_by_default(tmp_path):
    server = make_server(load(tiny_model_file(tmp_path / "m.safetensors")), port=0, quiet=True)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    args = build_parser().parse_args(["app", "--model", "m.safetensors"])
    assert (args.host, args.port) == ("127.0.0.1", 7860)


def test_cli_prints_the_url_it_serves(tmp_path):
    model = tiny_model_file(tmp_path / "model.safetensors")
    proc = subprocess.Popen([sys.executable, "-m", "g2g.cli", "app", "--model", str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {model} at http://127.0.0.1:"), (line, proc.poll())
        url = line.split(" at ")[1].split()[0]
        assert json.loads(get(url, "/api/info")[1])["model"] == "model"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_cli_names_a_missing_model(tmp_path, capsys):
    from g2g.cli import main
    assert main(["app", "--model", str(tmp_path / "none.safetensors"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("g2g: error:") and "none.safetensors" in err and err.count("\n") == 1
