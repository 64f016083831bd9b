"""`g2g app` in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) uploads two images, swaps them, and the images on the page equal `G2GModel.swap` on the same
files. Also draws a grid and an interpolation, shows a bad upload's message, and takes the screenshot
the README shows.

G2G_APP_SCREENSHOT=PATH also saves the screenshot to PATH (`docs/app.png`); G2G_APP_MODEL=NAME_OR_PATH
shows that model instead of the bundled `shapes` (or, without bundled models, a tiny untrained one)."""
import os
import shutil
import threading
import urllib.request

import numpy as np
import pytest
from PIL import Image

from g2g.app import make_server
from g2g.data.shapes import ShapesDataset
from g2g.inference import load
from g2g.models import bundled_names
from helpers import decode, quantised, read, tiny_model_file

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# headless, offline: no GPU, no QUIC, no first-run, background or update traffic, no sync
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1100,900"]
WAIT_S = 120  # an upper bound for a page action, not a speed requirement


@pytest.fixture
def browser(tmp_path, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")      # Selenium Manager: never download a browser or driver
    monkeypatch.setenv("SE_AVOID_STATS", "true")  # ... and send no usage statistics
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def served(tmp_path):
    bundled = "shapes" if "shapes" in bundled_names() else None  # the model `g2g app --model shapes` serves
    model_name = os.environ.get("G2G_APP_MODEL") or bundled or str(tiny_model_file(tmp_path / "tiny.safetensors"))
    model = load(model_name)
    server = make_server(model, os.path.basename(model_name).removesuffix(".safetensors"), port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, model
    server.shutdown()
    server.server_close()
    thread.join()


def shapes_files(folder, size: int) -> list:
    """Two shapes of different classes as PNG files, the kind of image a shapes model knows."""
    data = ShapesDataset(split="test", size=size, n=8, seed=1)
    second = int((data.labels != data.labels[0]).nonzero()[0])
    paths = []
    for k, i in enumerate([0, second]):
        pixels = ((data.images[i] * 0.5 + 0.5) * 255).round().byte().permute(1, 2, 0).numpy()
        paths.append(folder / f"shape{k + 1}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def wait_for(driver, label: str) -> None:
    """Until the status line says the action `label` ended; fails with the page's message if it failed."""
    def ended(d):
        return d.find_element(By.ID, "status").text in (f"{label}: done", f"{label}: failed")
    WebDriverWait(driver, WAIT_S).until(ended)
    assert driver.find_element(By.ID, "status").text == f"{label}: done", driver.find_element(By.ID, "error").text


def choose(driver, slot: str, *paths) -> None:
    """Pick files in the file input of slot x1 or x2, replacing its earlier ones as a file dialog does
    (chromedriver adds to the files of an input that takes several); until the page shows them."""
    field = driver.find_element(By.ID, f"{slot}-file")
    driver.execute_script("arguments[0].value = '';", field)
    field.send_keys("\n".join(str(p) for p in paths))
    names = [p.name for p in paths]

    def shown(d):
        return [c.get_attribute("title") for c in d.find_elements(By.CSS_SELECTOR, f"#{slot}-preview figcaption")]
    WebDriverWait(driver, WAIT_S).until(lambda d: shown(d) == names)


def test_swap_in_the_browser_equals_the_model(browser, served, tmp_path):
    server, model = served
    p1, p2 = shapes_files(tmp_path, max(16, model.config.image_size))
    browser.get(server.url)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    choose(browser, "x1", p1)
    choose(browser, "x2", p2)
    browser.find_element(By.ID, "swap").click()
    wait_for(browser, "swap")

    x = read([p1, p2], model)
    res = model.swap(x[:1], x[1:])
    for key, value in {"m1": res.m1, "m2": res.m2, "r1": res.r1, "r2": res.r2}.items():
        src = browser.find_element(By.ID, f"out-{key}").get_attribute("src")
        assert np.array_equal(decode(src), quantised(value)), key

    browser.find_element(By.ID, "interpolate").click()
    wait_for(browser, "interpolate")
    browser.find_element(By.ID, "random-grid").click()
    wait_for(browser, "random set")
    browser.find_element(By.ID, "grid").click()
    wait_for(browser, "grid")
    for image in ("interp-out", "grid-out"):
        assert browser.execute_script(f"return document.getElementById('{image}').naturalWidth") > 0, image
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, height + 150)  # the whole page in one screenshot (plus the window's frame)
    shot = tmp_path / "app.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("G2G_APP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["G2G_APP_SCREENSHOT"])

    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    choose(browser, "x1", text)
    browser.find_element(By.ID, "swap").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "notes.txt is not an image" in browser.find_element(By.ID, "error").text
    with urllib.request.urlopen(server.url + "api/info", timeout=WAIT_S) as response:  # still serving
        assert response.status == 200
