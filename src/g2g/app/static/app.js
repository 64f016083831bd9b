"use strict";
// The page: images are kept as {name, data: data URL} and sent to the JSON API, which answers with PNG
// data URLs. Nothing here talks to any other host.

const state = { x1: [], x2: [], grid: [], imageSize: 32 };
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, data: reader.result });
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function showThumbs(container, uploads) {
  container.replaceChildren(...uploads.map((upload) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = upload.data;
    img.alt = upload.name;
    const caption = document.createElement("figcaption");
    caption.textContent = upload.name;
    caption.title = upload.name;
    figure.append(img, caption);
    return figure;
  }));
}

// A result image drawn at a whole multiple of its size, so that small models' pixels stay sharp.
function showWide(img, dataUrl) {
  img.onload = () => {
    const scale = Math.max(1, Math.round(64 / state.imageSize));
    img.style.width = `${img.naturalWidth * scale}px`;
  };
  img.src = dataUrl;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  let payload;
  try {
    payload = await response.json();
  } catch {
    throw new Error(`the server answered ${response.status} without a message`);
  }
  if (!response.ok) throw new Error(payload.error || `the server answered ${response.status}`);
  return payload;
}

// Runs one action: clears the message, shows progress, shows a failure as one line.
async function run(label, task) {
  showError("");
  $("status").textContent = `${label}…`;
  document.body.dataset.busy = "true";
  try {
    await task();
    $("status").textContent = `${label}: done`;
  } catch (e) {
    showError(e.message);
    $("status").textContent = `${label}: failed`;
  } finally {
    delete document.body.dataset.busy;
  }
}

function needPair() {
  if (state.x1.length === 0 || state.x2.length === 0) throw new Error("pick image 1 and image 2 first");
}

async function swap() {
  needPair();
  const out = await post("/api/swap", { x1: state.x1, x2: state.x2 });
  for (const key of ["x1", "x2", "m1", "m2", "r1", "r2"]) $(`out-${key}`).src = out[key];
  $("m1k-figure").hidden = !out.m1_k;
  if (out.m1_k) {
    $("out-m1k").src = out.m1_k;
    $("k").textContent = out.k;
  }
  $("m2k-figure").hidden = !out.m2_k;
  if (out.m2_k) {
    $("out-m2k").src = out.m2_k;
    $("k1").textContent = out.k1;
  }
}

async function interpolate() {
  needPair();
  const steps = Number($("steps").value);
  const out = await post("/api/interpolate", { a: state.x1[0], b: state.x2[0], steps });
  showWide($("interp-out"), out.strip);
}

async function grid() {
  if (state.grid.length < 2) throw new Error("pick 2 to 8 images for the grid first");
  const out = await post("/api/grid", { images: state.grid });
  showWide($("grid-out"), out.grid);
}

async function randomImages(count) {
  const out = await post("/api/random", { data: $("data").value, count });
  return out.images;
}

async function randomPair() {
  const [a, b] = await randomImages(2);
  state.x1 = [a];
  state.x2 = [b];
  showThumbs($("x1-preview"), [a]);
  showThumbs($("x2-preview"), [b]);
}

async function randomGrid() {
  state.grid = await randomImages(4);
  showThumbs($("grid-preview"), state.grid);
}

function onFiles(inputId, previewId, store) {
  $(inputId).addEventListener("change", (event) => run("reading files", async () => {
    const uploads = await Promise.all([...event.target.files].map(readFile));
    store(uploads);
    showThumbs($(previewId), uploads);
  }));
}

async function start() {
  const response = await fetch("/api/info");
  const info = await response.json();
  state.imageSize = info.image_size;
  $("model-info").textContent = `model ${info.model} · arch ${info.arch} · ${info.image_size} px`;
  $("data").replaceChildren(...info.datasets.map((name) => new Option(name, name, false, name === info.data)));
  const showData = () => document.querySelectorAll(".data-name").forEach((s) => { s.textContent = $("data").value; });
  $("data").addEventListener("change", showData);
  showData();
  $("steps").max = info.max_steps;
  $("steps").addEventListener("input", () => { $("steps-value").textContent = $("steps").value; });
  onFiles("x1-file", "x1-preview", (uploads) => { state.x1 = uploads; });
  onFiles("x2-file", "x2-preview", (uploads) => { state.x2 = uploads; });
  onFiles("grid-files", "grid-preview", (uploads) => { state.grid = uploads; });
  $("swap").addEventListener("click", () => run("swap", swap));
  $("interpolate").addEventListener("click", () => run("interpolate", interpolate));
  $("grid").addEventListener("click", () => run("grid", grid));
  $("random-pair").addEventListener("click", () => run("random pair", randomPair));
  $("random-grid").addEventListener("click", () => run("random set", randomGrid));
  document.body.dataset.ready = "true";
}

start().catch((e) => showError(`cannot reach the app server: ${e.message}`));
