// The splatforge job service UI: upload, job list with live progress, job page with report and viewer.
// Talks only to the /v1 API; the token is sent as a bearer header and set as a same-site cookie so that
// the viewer and report <iframe>s can fetch the job's artifacts.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "splatforge_token";
let picked = [];
let listTimer = null;
let jobStream = null;

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

function setToken(value) {
  localStorage.setItem(TOKEN_KEY, value);
  document.cookie = `${TOKEN_KEY}=${encodeURIComponent(value)}; path=/; SameSite=Strict`;
}

function flash(message, ok = false) {
  const el = $("flash");
  el.textContent = message;
  el.className = ok ? "ok" : "";
  el.hidden = !message;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 || response.status === 403) $("token-box").hidden = false;
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    const error = new Error(body.error || `${response.status} ${response.statusText}`);
    error.advice = body.advice || "";
    error.status = response.status;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

function fail(error) {
  flash(error.advice ? `${error.message} — ${error.advice}` : error.message);
}

function fmtDuration(s) {
  if (s == null) return "";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// --- upload --------------------------------------------------------------------------------------
function pick(files) {
  picked = Array.from(files);
  const bytes = picked.reduce((n, f) => n + f.size, 0);
  $("picked").textContent = picked.length
    ? `${picked.length} file(s), ${(bytes / 1048576).toFixed(1)} MiB` : "nothing chosen";
  $("start").disabled = picked.length === 0;
}

function upload(event) {
  event.preventDefault();
  const form = new FormData();
  for (const file of picked) form.append("files", file, file.name);
  form.append("preset", $("preset").value);
  if ($("steps").value) form.append("steps", $("steps").value);
  if ($("force").checked) form.append("force", "true");
  // XMLHttpRequest for upload progress (fetch has none).
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/jobs");
  if (token()) xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
  const bar = $("upload-progress");
  bar.hidden = false;
  $("start").disabled = true;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.onloadend = () => {
    bar.hidden = true;
    $("start").disabled = picked.length === 0;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 202) {
      flash("");
      pick([]);
      location.hash = `#/jobs/${body.id}`;
    } else {
      if (xhr.status === 401 || xhr.status === 403) $("token-box").hidden = false;
      flash(`${body.error || `upload failed (${xhr.status || "network error"})`}${body.advice ? " — " + body.advice : ""}`);
    }
  };
  xhr.send(form);
}

// --- job list ------------------------------------------------------------------------------------
async function refreshList() {
  try {
    const state = $("state-filter").value;
    const data = await api(`/v1/jobs?limit=100${state ? `&state=${state}` : ""}`);
    const body = $("jobs").querySelector("tbody");
    body.replaceChildren(...data.jobs.map((job) => {
      const row = document.createElement("tr");
      row.dataset.job = job.id;
      const link = `<a href="#/jobs/${job.id}"><code>${job.id.slice(0, 10)}…</code></a>`;
      const input = job.inputs.kind === "images" || job.inputs.images
        ? `${job.inputs.images} images` : job.inputs.kind;
      row.innerHTML = `<td>${link}</td><td>${new Date(job.created_at).toLocaleString()}</td><td></td>` +
        `<td><span class="state ${job.state}">${job.state}</span></td><td></td>` +
        `<td><progress max="100" value="${job.progress}"></progress> ${job.progress.toFixed(0)}%</td>`;
      row.children[2].textContent = input;
      row.children[4].textContent = job.stage || "";
      return row;
    }));
    $("jobs-empty").hidden = data.jobs.length > 0;
  } catch (error) { fail(error); }
}

// --- job page ------------------------------------------------------------------------------------
function showJob(job) {
  $("job-id").textContent = job.id;
  $("job-state").textContent = job.state;
  $("job-state").className = `state ${job.state}`;
  $("job-bar").style.width = `${job.progress}%`;
  let line = `${job.progress.toFixed(1)}%`;
  if (job.stage) line += ` · stage ${job.stage} (${job.stage_progress.toFixed(0)}%)`;
  if (job.message) line += ` · ${job.message}`;
  if (job.eta_s != null) line += ` · about ${fmtDuration(job.eta_s)} left`;
  $("job-line").textContent = line;
  $("job-error").hidden = !job.error;
  if (job.error) {
    $("job-error").querySelector(".error-message").textContent = job.error.message;
    $("job-error").querySelector(".advice").textContent = job.error.advice || "";
  }
  $("cancel").disabled = !["queued", "running"].includes(job.state);
  $("retry").disabled = !["failed", "cancelled"].includes(job.state);
  const metrics = Object.assign({}, job.metrics || {});
  const final = metrics.final || {};
  delete metrics.final;
  const rows = Object.entries(metrics).filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [k, Number.isInteger(v) ? v.toLocaleString() : v.toFixed(4)]);
  if (final.eval) for (const [k, v] of Object.entries(final.eval)) if (v != null) rows.push([`eval ${k}`, v.toFixed(3)]);
  $("job-metrics").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
}

async function loadJobDetail(id) {
  const job = await api(`/v1/jobs/${id}`);
  showJob(job);
  const art = job.artifacts || {};
  $("artifact-links").replaceChildren(...Object.entries(art).map(([name, url]) => {
    const a = document.createElement("a");
    a.href = url; a.textContent = name; a.target = "_blank";
    return a;
  }));
  // A compact format (the export stage writes splat/formats DEFAULT_COMPACT), else the exact PLY.
  const splat = art["scene.sog"] || art["scene.spz"] || art["scene.ply"];
  if (splat) {
    const src = `/viewer/index.html?ply=${encodeURIComponent(splat)}` +
      `&cameras=${encodeURIComponent(art["cameras.json"] || "")}`;
    if ($("viewer").getAttribute("src") !== src) $("viewer").setAttribute("src", src);
    $("viewer-section").hidden = false;
  }
  if (art["report.html"]) {
    if ($("report").getAttribute("src") !== art["report.html"]) $("report").setAttribute("src", art["report.html"]);
    $("report-section").hidden = false;
  }
  try {
    const response = await fetch(`/v1/jobs/${id}/log?tail=300`, { headers: { Authorization: `Bearer ${token()}` } });
    if (response.ok) $("job-log").textContent = await response.text();
  } catch (e) { /* the log is optional */ }
  return job;
}

// Server-sent events read through fetch, so the bearer header goes along (EventSource cannot send it).
async function followJob(id) {
  const controller = new AbortController();
  jobStream = controller;
  try {
    const response = await fetch(`/v1/jobs/${id}/events`, {
      headers: { Authorization: `Bearer ${token()}` }, signal: controller.signal });
    if (!response.ok) throw new Error(`events: ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let lastStage = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (event === "progress" && data) {
          const job = JSON.parse(data);
          showJob(job);
          if (job.stage !== lastStage) { lastStage = job.stage; loadJobDetail(id).catch(fail); }
        }
        if (event === "end") { await loadJobDetail(id); return; }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") fail(error);
  }
}

async function action(verb, id) {
  try {
    if (verb === "delete") {
      if (!confirm("Delete this job and all its files?")) return;
      await api(`/v1/jobs/${id}`, { method: "DELETE" });
      location.hash = "#/";
      return;
    }
    await api(`/v1/jobs/${id}/${verb}`, { method: "POST" });
    await loadJobDetail(id);
    if (verb === "retry") followJob(id);
  } catch (error) { fail(error); }
}

// --- routing -------------------------------------------------------------------------------------
function route() {
  if (jobStream) { jobStream.abort(); jobStream = null; }
  clearInterval(listTimer);
  const match = location.hash.match(/^#\/jobs\/([A-Za-z0-9_-]+)$/);
  $("home").hidden = !!match;
  $("job").hidden = !match;
  if (match) {
    const id = match[1];
    $("viewer-section").hidden = $("report-section").hidden = true;
    $("viewer").removeAttribute("src");
    $("report").removeAttribute("src");
    $("job").dataset.job = id;
    loadJobDetail(id).then(() => followJob(id)).catch(fail);
  } else {
    refreshList();
    listTimer = setInterval(refreshList, 1500);
  }
}

async function init() {
  $("token-button").onclick = () => { $("token-box").hidden = !$("token-box").hidden; };
  $("token-form").onsubmit = (e) => {
    e.preventDefault();
    setToken($("token-input").value.trim());
    $("token-box").hidden = true;
    flash("");
    route();
  };
  if (token()) setToken(token());
  try {
    const health = await (await fetch("/healthz")).json();
    $("token-button").hidden = !health.auth;
    if (health.auth && !token()) $("token-box").hidden = false;
  } catch (e) { /* the server is unreachable; the API calls will say so */ }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files); });
  $("file-input").onchange = (e) => pick(e.target.files);
  $("job-form").onsubmit = upload;
  $("state-filter").onchange = refreshList;
  for (const verb of ["cancel", "retry", "delete"]) $(verb).onclick = () => action(verb, $("job").dataset.job);
  window.addEventListener("hashchange", route);
  route();
}

init();
