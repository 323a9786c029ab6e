// The site page and a camera's page of `detect watch --ui` (detect/watch/ui/app.py): the site
// from api/site, then live from api/stream (server-sent events); each camera's picture polled
// from api/cameras/NAME/picture.jpg, the next asked once the last has loaded, at most
// PICTURE_FPS a second, so a slow browser asks for fewer and never holds a camera back.
"use strict";

const PICTURE_FPS = 5;
const MAX_EVENTS = 200;
const COLORS = ["#3f8fd8", "#e0a030", "#2e9e5b", "#c8423a", "#9b6ad6", "#39b5b0", "#d0d040"];

const page = document.body.dataset.page;
const only = page === "camera" ? decodeURIComponent(location.pathname.split("/").pop()) : null;
const cameras = new Map(); // name -> {tile, img, stats, state, counts, problems, history}
const events = [];
let ended = false;
let pictures = true;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function kindOf(event) {
  if (event.health) return `${event.health} ${event.event}`;
  const place = event.zone ?? event.line;
  return `${place} ${event.event}${event.direction ? "-" + event.direction : ""}`;
}

function header(site) {
  const info = site.info;
  document.getElementById("site-name").textContent = info.site || "detect watch";
  document.title = `${info.site} · detect watch` + (only ? ` · ${only}` : "");
  const model = info.model || {};
  const parts = [model.name && `model ${model.name}` + (model.version ? ` v${model.version}` : ""),
    model.engine, info.servers && info.servers.length ? `servers ${info.servers.join(", ")}` : "",
    info.ray ? "on Ray" : ""];
  document.getElementById("model").textContent = parts.filter(Boolean).join(" · ");
}

function runState(text, cls) {
  const badge = document.getElementById("run-state");
  badge.textContent = text;
  badge.className = `badge ${cls}`;
}

function addCamera(camera) {
  const link = page === "site" ? el("a", {href: `camera/${encodeURIComponent(camera.name)}`,
    text: camera.name}) : el("span", {text: camera.name});
  const state = el("span", {class: "badge", text: "starting"});
  const img = el("img", {alt: `${camera.name}, live`});
  const placeholder = el("span", {text: "waiting for a picture"});
  const picture = el("div", {class: "picture"}, placeholder);
  const stats = el("div", {class: "stats"});
  const problems = el("div", {class: "problems"});
  const counts = el("table", {class: "counts"});
  const tile = el("article", {class: "tile", id: `tile-${camera.name}`, "data-camera": camera.name},
    el("h3", {}, link, state), picture, stats, problems, counts);
  document.getElementById("tiles").append(tile);
  const view = {tile, img, picture, placeholder, state, stats, problems, counts, history: [],
    shown: false, asked: 0};
  cameras.set(camera.name, view);
  if (pictures) poll(camera.name, view);
  else placeholder.textContent = "no live picture: on Ray the frames stay with the camera's actor";
  return view;
}

function poll(name, view) {
  if (ended) return;
  const started = performance.now();
  const again = () => {
    const wait = Math.max(0, 1000 / PICTURE_FPS - (performance.now() - started));
    setTimeout(() => poll(name, view), wait);
  };
  view.img.onload = () => {
    if (!view.shown) { view.placeholder.replaceWith(view.img); view.shown = true; }
    document.body.dataset.pictures = Number(document.body.dataset.pictures || 0) + 1;
    again();
  };
  view.img.onerror = () => setTimeout(() => poll(name, view), 1000); // none yet (204), or away
  view.asked += 1;
  view.img.src = `api/cameras/${encodeURIComponent(name)}/picture.jpg?n=${view.asked}`;
}

function updateCamera(camera) {
  const view = cameras.get(camera.name);
  if (!view) return;
  if (camera.state !== undefined) {
    view.state.textContent = camera.state;
    view.state.className = `badge ${camera.state}`;
    view.stats.textContent = `${camera.fps.toFixed(1)} frames/s · ${camera.processed} processed` +
      ` · ${camera.dropped} dropped · ${camera.reconnects} reconnects`;
    view.tile.dataset.processed = camera.processed;
  }
  view.problems.replaceChildren(...camera.problems.map(
    (p) => el("span", {class: "badge problem", "data-problem": p, text: p})));
  // one row per class, one column per zone or line and kind, as the picture's counts panel
  const columns = [...new Set(camera.counts.map((c) => `${c.place}\u0000${c.kind}`))];
  const labels = [...new Set(camera.counts.map((c) => c.label))].sort();
  const count = new Map(camera.counts.map((c) => [`${c.place}\u0000${c.kind}\u0000${c.label}`, c.count]));
  const head = el("tr", {}, el("th", {text: "class"}), ...columns.map((column) => {
    const [place, kind] = column.split("\u0000");
    return el("th", {class: "n"}, place, el("br"), el("span", {class: "kind", text: kind}));
  }));
  const rows = labels.map((label) => el("tr", {}, el("td", {text: label}), ...columns.map((column) => {
    const [place, kind] = column.split("\u0000");
    const n = count.get(`${column}\u0000${label}`) || 0;
    const cell = el("td", {class: "n", text: String(n)});
    if (n) Object.assign(cell.dataset, {place, kind, label, count: n});
    return cell;
  })));
  view.counts.replaceChildren(...(columns.length ? [head, ...rows] : []));
  for (const sample of camera.history || []) {
    const last = view.history[view.history.length - 1];
    if (!last || sample.time > last.time) view.history.push(sample);
  }
  if (view.history.length > 720) view.history.splice(0, view.history.length - 720);
  if (page === "camera") plot(view.history);
}

function wanted(event) {
  if (only) return event.camera === only;
  const camera = document.getElementById("filter-camera").value;
  const kind = document.getElementById("filter-kind").value;
  const label = document.getElementById("filter-class").value;
  const eventKind = event.health ? "health" : event.event;
  return (!camera || event.camera === camera) && (!kind || eventKind === kind) &&
    (!label || event.label === label);
}

function option(select, value) {
  if (!select || [...select.options].some((o) => o.value === value)) return;
  select.append(el("option", {value, text: value}));
}

function eventItem(event) {
  const urls = event.urls || {};
  const thumb = urls.crop || urls.snapshot;
  const what = `${event.camera} · ${kindOf(event)}` +
    (event.label ? ` · ${event.label}` + (event.track_id >= 0 ? ` #${event.track_id}` : "") : "");
  const when = new Date(event.time).toLocaleTimeString();
  const links = el("span", {class: "when"}, `${when} · frame ${event.frame}`);
  if (urls.snapshot) links.append(" · ", el("a", {href: urls.snapshot, target: "_blank", text: "snapshot"}));
  if (urls.clip) links.append(" · ", el("a", {href: urls.clip, target: "_blank", text: "clip"}));
  const item = el("li", {"data-id": event.id, "data-camera": event.camera});
  if (thumb) item.append(el("img", {src: thumb, alt: `snapshot of ${what}`, loading: "lazy"}));
  item.append(el("div", {}, el("div", {class: "what", text: what}), links));
  return item;
}

function addEvent(event) {
  events.push(event);
  if (events.length > MAX_EVENTS) events.shift();
  option(document.getElementById("filter-camera"), event.camera);
  option(document.getElementById("filter-kind"), event.health ? "health" : event.event);
  if (event.label) option(document.getElementById("filter-class"), event.label);
  if (!wanted(event)) return;
  const list = document.getElementById("events");
  list.prepend(eventItem(event));
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function redrawEvents() {
  const list = document.getElementById("events");
  list.replaceChildren(...events.filter(wanted).reverse().map(eventItem));
}

function plot(history) {
  const svg = document.getElementById("plot");
  const legend = document.getElementById("legend");
  const keys = [...new Set(history.flatMap((s) => Object.keys(s.totals)))].sort();
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  legend.replaceChildren();
  if (history.length < 1 || keys.length === 0) return;
  const t0 = history[0].time, t1 = Math.max(history[history.length - 1].time, t0 + 1);
  const top = Math.max(1, ...history.flatMap((s) => Object.values(s.totals)));
  keys.forEach((key, i) => {
    const color = COLORS[i % COLORS.length];
    const points = history.map((s) => {
      const x = 5 + 390 * (s.time - t0) / (t1 - t0);
      const y = 155 - 150 * (s.totals[key] || 0) / top;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
    const entry = el("span", {text: `${key}: ${history[history.length - 1].totals[key] || 0}`});
    entry.style.setProperty("--c", color);
    legend.append(entry);
  });
}

function updateSite(site) {
  header(site);
  pictures = site.info.pictures !== false;
  for (const camera of site.cameras) {
    if (only && camera.name !== only) continue;
    if (!cameras.has(camera.name)) addCamera(camera);
    updateCamera(camera);
  }
  if (site.ended) finish();
  else runState("running", "running");
}

function finish() {
  ended = true;
  runState("ended", "");
}

async function start() {
  for (const id of ["filter-camera", "filter-kind", "filter-class"]) {
    const select = document.getElementById(id);
    if (select) select.addEventListener("change", redrawEvents);
  }
  const answer = await fetch("api/site", {cache: "no-store"});
  if (!answer.ok) {
    runState(`refused (${answer.status})`, "failed");
    return;
  }
  const site = await answer.json();
  updateSite(site);
  for (const event of site.recent) addEvent(event);
  if (site.ended) return;
  const stream = new EventSource("api/stream");
  stream.addEventListener("site", (m) => updateSite(JSON.parse(m.data)));
  stream.addEventListener("camera", (m) => updateCamera(JSON.parse(m.data)));
  stream.addEventListener("detect", (m) => addEvent(JSON.parse(m.data)));
  stream.addEventListener("end", () => { finish(); stream.close(); });
  stream.onerror = () => { if (!ended) runState("reconnecting", "reconnecting"); };
}

start();
