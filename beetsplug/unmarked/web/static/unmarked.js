// The unmarked page: counts, the track table (select, mark, unmark, preview),
// recent jobs and their records, and a progress dialog fed by the job's
// Server-Sent Events. Plain browser JavaScript, no build step.
//
// Everything that came from the library (tags, paths, errors) is put in the
// page as text (textContent, setAttribute), never as HTML. Job events only
// update `state`; the dialog is redrawn from it at most five times a second,
// so a 20k-item job cannot flood the tab.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const OPS = ["process", "rename", "normalize"];
  const ACTIVE = new Set(["queued", "running"]);
  const MAX_ERRORS_SHOWN = 200;
  const RENDER_EVERY_MS = 200;
  const PAGE_SIZE = 50;
  const RECORD_PAGE = 50;
  const JOBS_SHOWN = 20;

  const dialog = $("[data-job-dialog]");
  const backdrop = $("[data-backdrop]");
  const readonly = document.body.dataset.readonly === "true";

  let state = null; // the job shown in the dialog, as last heard
  let source = null; // its EventSource
  let dirty = false;
  let opener = null; // the control to give focus back to (or a function finding it)

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      return { status: 0, data: { error: `The server could not be reached (${error.message}).` } };
    }
    let data = null;
    try { data = await response.json(); } catch (_) { /* 204 or not JSON */ }
    return { status: response.status, data };
  }

  function errorOf(status, data) {
    return (data && data.error) || `The server answered ${status}.`;
  }

  function query() {
    return $("#query").value.trim();
  }

  function show(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  function el(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  // --- counts ----------------------------------------------------------------

  async function refreshCounts() {
    show($("[data-query-error]"), "");
    for (const op of OPS) {
      const params = new URLSearchParams({ op, query: query(), limit: "1" });
      const { status, data } = await api("GET", `api/unmarked?${params}`);
      const cell = $(`[data-count="${op}"]`);
      if (status === 200) {
        cell.textContent = String(data.count);
      } else {
        cell.textContent = "?";
        show($("[data-query-error]"), errorOf(status, data));
      }
    }
  }

  // --- the track table ----------------------------------------------------------

  const tracks = {
    offset: 0,
    count: 0,
    items: [],
    selected: new Set(), // ids picked by hand, across pages
    allMatching: false, // or: every track the query matches, in the current scope
    loading: 0, // a token: only the latest answer is drawn
  };
  const trackBody = $("[data-tracks-body]");
  const opSelect = $("select[name=op]");
  const scopeSelect = $("select[name=scope]");
  const allMatching = $("input[name=select-all-matching]");
  const selectPage = $("input[name=select-page]");

  function trackParams(extra) {
    return new URLSearchParams({ op: opSelect.value, scope: scopeSelect.value, query: query(), ...extra });
  }

  async function loadTracks() {
    const token = ++tracks.loading;
    const params = trackParams({ limit: String(PAGE_SIZE), offset: String(tracks.offset) });
    const { status, data } = await api("GET", `api/unmarked?${params}`);
    if (token !== tracks.loading) return;
    if (status !== 200) {
      show($("[data-tracks-error]"), errorOf(status, data));
      tracks.items = [];
      tracks.count = 0;
    } else {
      show($("[data-tracks-error]"), "");
      if (data.items.length === 0 && tracks.offset > 0 && data.count > 0) {
        tracks.offset = Math.max(0, Math.floor((data.count - 1) / PAGE_SIZE) * PAGE_SIZE);
        loadTracks(); // the page emptied (tracks were marked): show the last one
        return;
      }
      tracks.items = data.items;
      tracks.count = data.count;
    }
    renderTracks();
  }

  function scopeWords() {
    return { unmarked: "not yet done", marked: "done", all: "all tracks" }[scopeSelect.value];
  }

  function renderTracks() {
    const first = tracks.count ? tracks.offset + 1 : 0;
    const last = tracks.offset + tracks.items.length;
    $("[data-tracks-caption]").textContent =
      `Tracks for ${opSelect.value} (${scopeWords()}): ${first}–${last} of ${tracks.count}`;
    trackBody.replaceChildren(...tracks.items.map(trackRow));
    if (tracks.items.length === 0) {
      const row = el("tr", null, { role: "row" });
      row.append(el("td", tracks.count ? "" : "No tracks match.", { colspan: "6", role: "cell" }));
      trackBody.append(row);
    }
    const pages = Math.max(1, Math.ceil(tracks.count / PAGE_SIZE));
    const pageNumber = Math.floor(tracks.offset / PAGE_SIZE) + 1;
    $("[data-page-info]").textContent = `Page ${pageNumber} of ${pages}`;
    $("[data-action=prev]").disabled = tracks.offset === 0;
    $("[data-action=next]").disabled = tracks.offset + PAGE_SIZE >= tracks.count;
    $("[data-matching-count]").textContent = String(tracks.count);
    renderSelection();
  }

  function trackRow(item) {
    const row = el("tr", null, { "data-track-row": "", "data-id": String(item.id), role: "row" });
    const pick = el("td", null, { class: "pick", role: "cell" });
    const box = el("input", null, {
      type: "checkbox", name: "select", value: String(item.id),
      "aria-label": `Select ${item.title || "(no title)"} by ${item.artist || "(no artist)"}`,
    });
    pick.append(box);
    row.append(pick);
    for (const [label, value] of [["Artist", item.artist], ["Title", item.title], ["Album", item.album]]) {
      row.append(el("td", value, { "data-label": label, role: "cell" }));
    }
    row.append(el("td", item.path, { "data-label": "Path", class: "path", role: "cell" }));
    const preview = el("td", null, { "data-label": "Would change", class: "preview-cell", role: "cell" });
    preview.append(el("div", null, { "data-preview": "", hidden: "" }));
    row.append(preview);
    return row;
  }

  function selectedCount() {
    return tracks.allMatching ? tracks.count : tracks.selected.size;
  }

  function renderSelection() {
    const boxes = trackBody.querySelectorAll("input[name=select]");
    for (const box of boxes) box.checked = tracks.allMatching || tracks.selected.has(Number(box.value));
    const onPage = boxes.length;
    const pickedHere = [...boxes].filter((box) => box.checked).length;
    selectPage.checked = onPage > 0 && pickedHere === onPage;
    selectPage.indeterminate = pickedHere > 0 && pickedHere < onPage;
    allMatching.checked = tracks.allMatching;
    const n = selectedCount();
    $("[data-selected-count]").textContent = tracks.allMatching
      ? `All ${plural(tracks.count, "matching track")} selected`
      : (n ? `${plural(n, "track")} selected` : "No tracks selected");
    for (const action of ["mark", "unmark"]) $(`[data-action=${action}]`).disabled = readonly || n === 0;
  }

  function clearSelection() {
    tracks.selected.clear();
    tracks.allMatching = false;
  }

  function reloadTracks() {
    tracks.offset = 0;
    clearSelection();
    loadTracks();
  }

  trackBody.addEventListener("change", (e) => {
    const box = e.target;
    if (!(box instanceof HTMLInputElement) || box.name !== "select") return;
    const id = Number(box.value);
    if (tracks.allMatching) { // leaving "all matching": keep this page's other rows picked
      tracks.allMatching = false;
      for (const item of tracks.items) tracks.selected.add(item.id);
    }
    if (box.checked) tracks.selected.add(id);
    else tracks.selected.delete(id);
    renderSelection();
  });

  selectPage.addEventListener("change", () => {
    if (tracks.allMatching && !selectPage.checked) clearSelection();
    for (const item of tracks.items) {
      if (selectPage.checked) tracks.selected.add(item.id);
      else tracks.selected.delete(item.id);
    }
    renderSelection();
  });

  allMatching.addEventListener("change", () => {
    tracks.allMatching = allMatching.checked;
    if (!tracks.allMatching) tracks.selected.clear();
    renderSelection();
  });

  async function changeMarkers(action) {
    const op = opSelect.value;
    const body = tracks.allMatching
      ? { op, query: query(), scope: scopeSelect.value, all: true }
      : { op, ids: [...tracks.selected] };
    const button = $(`[data-action=${action}]`);
    button.disabled = true;
    const result = $("[data-result]");
    result.textContent = action === "mark" ? "Marking…" : "Unmarking…";
    const { status, data } = await api("POST", `api/${action}`, body);
    if (status !== 200) {
      result.textContent = "";
      show($("[data-tracks-error]"), errorOf(status, data));
      renderSelection();
      return;
    }
    show($("[data-tracks-error]"), "");
    const changes = Object.entries(data.changed).filter(([, n]) => n > 0)
      .map(([field, n]) => `${field} ${action === "mark" ? "set on" : "cleared from"} ${n}`);
    result.textContent = `${action === "mark" ? "Marked as done" : "Unmarked"} for ${data.op}: `
      + `${plural(data.matched, "track")} matched; ${changes.length ? changes.join(", ") : "nothing changed"}.`;
    clearSelection();
    await Promise.all([refreshCounts(), loadTracks()]);
  }

  async function preview() {
    const button = $("[data-action=preview]");
    button.disabled = true;
    const result = $("[data-result]");
    result.textContent = "Computing the preview…";
    const params = trackParams({ limit: String(PAGE_SIZE), offset: String(tracks.offset) });
    const { status, data } = await api("GET", `api/preview?${params}`);
    button.disabled = false;
    if (status !== 200) {
      result.textContent = "";
      show($("[data-tracks-error]"), errorOf(status, data));
      return;
    }
    let changing = 0;
    for (const item of data.items) {
      const cell = trackBody.querySelector(`[data-track-row][data-id="${item.id}"] [data-preview]`);
      if (!cell) continue;
      const lines = previewLines(item);
      if (item.error || Object.keys(item.changes).length || (item.dest && item.dest !== item.file)) changing += 1;
      cell.replaceChildren(...lines);
      cell.hidden = false;
    }
    result.textContent = `Preview for ${data.op} of ${plural(data.items.length, "track")} on this page: `
      + `${changing} would change. Nothing has been changed.`;
  }

  function shown(value) {
    if (Array.isArray(value)) return value.join("; ");
    return value === null || value === undefined ? "" : String(value);
  }

  function previewLines(item) {
    const list = el("ul");
    if (item.error) {
      list.append(el("li", item.skipped ? `skipped: ${item.error}` : `would fail: ${item.error}`, { class: "bad" }));
      return [list];
    }
    for (const [field, [before, after]] of Object.entries(item.changes)) {
      const line = el("li", null, { "data-field": field });
      line.append(el("span", `${field}: `, { class: "field" }), el("del", shown(before)),
        el("span", " → ", { "aria-label": "becomes" }), el("ins", shown(after)));
      list.append(line);
    }
    if (item.dest && item.dest !== item.file) {
      const line = el("li", null, { "data-field": "path" });
      line.append(el("span", "moves to ", { class: "field" }), el("span", item.dest, { class: "dest" }));
      list.append(line);
    }
    if (!list.children.length) list.append(el("li", "nothing to change"));
    return [list];
  }

  // --- recent jobs ---------------------------------------------------------------

  function when(epoch) {
    return epoch ? new Date(epoch * 1000).toLocaleString() : "–";
  }

  function took(job) {
    if (ACTIVE.has(job.status)) return "running";
    const began = job.started || job.created;
    if (!job.finished || !began) return "–";
    const seconds = job.finished - began;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  async function loadJobs() {
    const { status, data } = await api("GET", "api/jobs");
    if (status !== 200) return;
    const jobs = data.jobs.slice(0, JOBS_SHOWN);
    $("[data-jobs-body]").replaceChildren(...jobs.map(jobRow));
    $("[data-jobs-empty]").hidden = jobs.length > 0;
  }

  function jobRow(job) {
    const row = el("tr", null, { "data-job-row": "", "data-job": String(job.job), role: "row" });
    const open = el("button", `Job ${job.job}`, {
      type: "button", "data-action": "open-job", "aria-label": `Open the record of job ${job.job}`,
    });
    const first = el("td", null, { "data-label": "Job", role: "cell" });
    first.append(open);
    const counts = `${job.succeeded} succeeded, ${job.failed} failed, ${job.skipped} skipped of ${job.total}`;
    const time = el("time", when(job.created), { datetime: new Date(job.created * 1000).toISOString() });
    const whenCell = el("td", null, { "data-label": "When", role: "cell" });
    whenCell.append(time);
    row.append(first,
      el("td", job.status, { "data-label": "Status", "data-status": job.status, role: "cell" }),
      el("td", job.op, { "data-label": "Operation", role: "cell" }),
      el("td", job.origin, { "data-label": "Origin", role: "cell" }),
      el("td", counts, { "data-label": "Items", role: "cell" }),
      whenCell,
      el("td", took(job), { "data-label": "How long", role: "cell" }));
    row.addEventListener("click", () => openRecord(job.job));
    return row;
  }

  async function openRecord(jobId) {
    // The list is redrawn meanwhile: focus goes back to the job's row as it is then.
    opener = () => $(`[data-job-row][data-job="${jobId}"] button`);
    await attach(jobId, "", true);
  }

  // --- a job's record (in the dialog) ----------------------------------------------

  async function loadRecord(reset) {
    if (!state) return;
    const list = $("[data-record-items]");
    if (reset) list.replaceChildren();
    const jobId = state.job;
    const params = new URLSearchParams({ limit: String(RECORD_PAGE), offset: String(list.children.length) });
    const { status, data } = await api("GET", `api/jobs/${jobId}/items?${params}`);
    if (!state || state.job !== jobId) return;
    if (status !== 200) {
      show($("[data-record-note]"), errorOf(status, data));
      return;
    }
    list.append(...data.items.map(recordItem));
    const note = data.count === 0
      ? "No items were processed."
      : `${plural(data.count, "item")}${data.compacted ? " kept: this job's record was compacted to its failed items" : ""}; `
        + `showing ${list.children.length}.`;
    show($("[data-record-note]"), note);
    $("[data-action=record-more]").hidden = list.children.length >= data.count;
  }

  function recordItem(item) {
    const outcome = item.skipped ? "skipped" : item.success ? "succeeded" : "failed";
    const li = el("li", null, { "data-record-item": "", "data-status": outcome, class: outcome });
    li.append(el("strong", `${outcome}: `));
    if (outcome === "failed" || outcome === "skipped") {
      li.append(el("span", item.error || item.file || ""));
      return li;
    }
    li.append(el("span", item.file || ""));
    if (item.dest && item.dest !== item.file) li.append(el("span", " → "), el("span", item.dest));
    const changes = Object.entries(item.changes || {});
    if (changes.length) {
      li.append(el("span", ` (${changes.map(([f, [a, b]]) => `${f}: ${shown(a)} → ${shown(b)}`).join("; ")})`));
    }
    return li;
  }

  // --- starting and attaching ---------------------------------------------------

  async function start(op, button) {
    opener = button;
    show($("[data-start-error]"), "");
    const { status, data } = await api("POST", "api/jobs", { op, query: query() });
    if (status === 202) {
      await attach(data.job);
      loadJobs();
    } else if (status === 409 && data && data.job) {
      await attach(data.job, "Another job is already running on this library; showing it.");
    } else {
      show($("[data-start-error]"), errorOf(status, data));
    }
  }

  async function attach(jobId, note, record) {
    const { status, data } = await api("GET", `api/jobs/${jobId}`);
    if (status !== 200) return;
    state = {
      job: data.job, op: data.op, origin: data.origin, status: data.status, total: data.total,
      current: data.current, succeeded: data.succeeded, failed: data.failed, skipped: data.skipped,
      file: "", errors: data.errors || [], error: data.error, note: note || "",
      record: Boolean(record) && !ACTIVE.has(data.status),
    };
    openDialog();
    if (ACTIVE.has(data.status)) follow(data.job, data.last_event);
    else finish();
    render();
    if (state.record) loadRecord(true);
  }

  function follow(jobId, after) {
    if (source) source.close();
    // On reconnect EventSource sends Last-Event-ID itself; `after` is the first start.
    source = new EventSource(`api/jobs/${jobId}/events?after=${after}`);
    source.addEventListener("start", (e) => {
      const data = JSON.parse(e.data);
      state.total = data.total;
      state.status = "running";
      dirty = true;
    });
    source.addEventListener("item", (e) => {
      const data = JSON.parse(e.data);
      state.current = data.current;
      state.total = data.total;
      state.status = "running";
      state.file = data.dest || data.file || "";
      if (data.skipped) state.skipped += 1;
      else if (data.success) state.succeeded += 1;
      else {
        state.failed += 1;
        state.errors.push({ item_id: data.item_id, file: data.file, error: data.error });
      }
      dirty = true;
    });
    source.addEventListener("done", (e) => {
      const data = JSON.parse(e.data);
      Object.assign(state, {
        status: data.status, total: data.total, succeeded: data.succeeded,
        failed: data.failed, skipped: data.skipped, errors: data.results, error: data.error,
      });
      state.current = data.succeeded + data.failed + data.skipped;
      state.file = "";
      finish();
      render();
    });
  }

  function finish() {
    if (source) {
      source.close();
      source = null;
    }
    $("[data-action=cancel]").hidden = true;
    const close = $("[data-action=close]");
    close.hidden = false;
    close.focus();
    refreshCounts();
    loadTracks();
    loadJobs();
  }

  // --- the dialog ---------------------------------------------------------------

  function openDialog() {
    dialog.hidden = false;
    backdrop.hidden = false;
    const cancel = $("[data-action=cancel]");
    cancel.hidden = false;
    cancel.disabled = readonly;
    $("[data-action=close]").hidden = true;
    $("[data-job-errors]").replaceChildren();
    $("[data-record-items]").replaceChildren();
    $("[data-job-record]").hidden = true;
    cancel.focus();
  }

  function closeDialog() {
    if (state && ACTIVE.has(state.status)) return; // only a finished job's dialog closes
    dialog.hidden = true;
    backdrop.hidden = true;
    state = null;
    const target = typeof opener === "function" ? opener() : opener;
    if (target) target.focus();
  }

  function render() {
    dirty = false;
    if (!state) return;
    const percent = state.total ? Math.floor((100 * state.current) / state.total) : (ACTIVE.has(state.status) ? 0 : 100);
    $("[data-job-id]").textContent = String(state.job);
    $("[data-job-op]").textContent = state.op;
    $("[data-job-origin]").textContent = `started from ${state.origin}${state.note ? ". " + state.note : ""}`;
    const bar = $("[data-progress]");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${state.current} of ${state.total} items`);
    $("[data-progress-bar]").style.width = `${percent}%`;
    $("[data-job-current]").textContent = `${state.current} / ${state.total}`;
    const status = $("[data-job-status]");
    status.textContent = state.status;
    status.dataset.jobStatus = state.status;
    $("[data-job-file]").textContent = state.file || "–";
    $("[data-job-succeeded]").textContent = String(state.succeeded);
    $("[data-job-failed]").textContent = String(state.failed);
    $("[data-job-skipped]").textContent = String(state.skipped);
    $("[data-job-record]").hidden = !state.record;
    renderErrors();
    show($("[data-job-error]"), state.error || "");
  }

  function renderErrors() {
    const list = $("[data-job-errors]");
    const shownErrors = state.errors.slice(0, MAX_ERRORS_SHOWN);
    // A record lists the failed items itself, first.
    $("[data-job-errors-box]").hidden = state.record || state.errors.length === 0;
    if (list.children.length === shownErrors.length + (state.errors.length > MAX_ERRORS_SHOWN ? 1 : 0)) return;
    list.replaceChildren(...shownErrors.map((entry) => {
      const li = document.createElement("li");
      li.textContent = entry.error; // beets' messages name the file
      li.title = entry.file || "";
      return li;
    }));
    if (state.errors.length > MAX_ERRORS_SHOWN) {
      const more = document.createElement("li");
      more.textContent = `… and ${state.errors.length - MAX_ERRORS_SHOWN} more (GET api/jobs/${state.job} lists them all)`;
      list.append(more);
    }
  }

  // --- wiring ---------------------------------------------------------------------

  for (const button of document.querySelectorAll("button[data-op]")) {
    button.addEventListener("click", () => start(button.dataset.op, button));
  }
  $("[data-action=cancel]").addEventListener("click", async () => {
    if (!state) return;
    $("[data-action=cancel]").disabled = true;
    await api("POST", `api/jobs/${state.job}/cancel`);
  });
  $("[data-action=close]").addEventListener("click", closeDialog);
  $("[data-action=record-more]").addEventListener("click", () => loadRecord(false));
  $("[data-action=mark]").addEventListener("click", () => changeMarkers("mark"));
  $("[data-action=unmark]").addEventListener("click", () => changeMarkers("unmark"));
  $("[data-action=preview]").addEventListener("click", preview);
  $("[data-action=prev]").addEventListener("click", () => {
    tracks.offset = Math.max(0, tracks.offset - PAGE_SIZE);
    loadTracks();
  });
  $("[data-action=next]").addEventListener("click", () => {
    tracks.offset += PAGE_SIZE;
    loadTracks();
  });
  opSelect.addEventListener("change", reloadTracks);
  scopeSelect.addEventListener("change", reloadTracks);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !dialog.hidden) closeDialog();
  });
  $("#query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    refreshCounts();
    reloadTracks();
  });
  setInterval(() => { if (dirty) render(); }, RENDER_EVERY_MS);

  // A reload, a second tab, or a job started elsewhere (the CLI, another
  // browser): show the running job if there is one.
  (async () => {
    loadTracks();
    await refreshCounts();
    const { status, data } = await api("GET", "api/jobs");
    if (status === 200) {
      const jobs = data.jobs.slice(0, JOBS_SHOWN);
      $("[data-jobs-body]").replaceChildren(...jobs.map(jobRow));
      $("[data-jobs-empty]").hidden = jobs.length > 0;
    }
    const running = status === 200 && data.jobs.find((job) => ACTIVE.has(job.status));
    if (running) await attach(running.job);
  })();
})();
