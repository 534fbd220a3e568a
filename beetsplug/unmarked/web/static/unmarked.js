// The unmarked page: counts, the track table (select, mark, unmark, preview),
// a confirmation that shows a job's whole plan before it starts, recent jobs
// and their records, and a progress dialog fed by the job's Server-Sent
// Events. Plain browser JavaScript, no build step.
//
// Everything acts on what the page shows: the query in force is the one last
// submitted (an unsubmitted edit disables the actions), and checked tracks
// are exactly what the job buttons and mark/unmark act on.
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
  const RECORD_PAGE = 500;
  const JOBS_SHOWN = 20;
  // How library text is shown (whitespace, Unicode forms, failures): unmarked-text.js.
  const { el, n, plural, changeList, diffLine, plainReason, failureItem } = window.unmarkedText;
  // A whole job's plan, asked for slice by slice and shown: unmarked-plan.js.
  const { loadPlan, loadUndoPlan, renderPlan } = window.unmarkedPlan;

  const dialog = $("[data-job-dialog]");
  const confirmBox = $("[data-confirm]");
  const backdrop = $("[data-backdrop]");
  const strip = $("[data-job-strip]");
  const readonly = document.body.dataset.readonly === "true";

  let state = null; // the job shown in the dialog, as last heard
  let source = null; // its EventSource
  let dirty = false;
  let opener = null; // the control to give focus back to (or a function finding it)
  let inForce = ""; // the query last submitted: what counts, tracks and actions use
  let counts = {}; // op -> unmarked tracks matching the query in force

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

  function show(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  // A dialog is in the page, and a dialog to assistive technology, only while shown.
  function shownDialog(box, on) {
    box.hidden = !on;
    if (on) box.setAttribute("role", "dialog");
    else box.removeAttribute("role");
  }

  // One polite live region for everything said aloud; a screen reader queues
  // what it is told, in order.
  function announce(text) {
    $("[data-announce]").textContent = text;
  }

  // --- the query in force -----------------------------------------------------

  const queryBox = $("#query");

  function stale() {
    return queryBox.value.trim() !== inForce;
  }

  function renderQuery() {
    $("[data-query-in-force]").textContent = inForce
      ? `Query in force: “${inForce}”` : "Query in force: none (all tracks)";
    $("[data-query-stale]").hidden = !stale();
    renderActions();
  }

  queryBox.addEventListener("input", renderQuery);

  // --- counts ----------------------------------------------------------------

  let countsLoading = 0; // a token: an answer for a query no longer in force is dropped

  async function refreshCounts() {
    const token = ++countsLoading;
    show($("[data-query-error]"), "");
    await Promise.all(OPS.map(async (op) => {
      const params = new URLSearchParams({ op, query: inForce, limit: "1" });
      const { status, data } = await api("GET", `api/unmarked?${params}`);
      if (token !== countsLoading) return; // a later refresh (another query) answers instead
      const cell = $(`[data-count="${op}"]`);
      if (status === 200) {
        counts[op] = data.count;
        cell.textContent = n(data.count);
      } else {
        counts[op] = null;
        cell.textContent = "?";
        show($("[data-query-error]"), errorOf(status, data));
      }
    }));
    renderActions();
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
  const pageSize = $("select[name=page-size]");
  const allMatching = $("input[name=select-all-matching]");
  const selectPage = $("input[name=select-page]");

  function size() {
    return Number(pageSize.value);
  }

  function trackParams(extra) {
    return new URLSearchParams({ op: opSelect.value, scope: scopeSelect.value, query: inForce, ...extra });
  }

  async function loadTracks() {
    const token = ++tracks.loading;
    const params = trackParams({ limit: String(size()), offset: String(tracks.offset) });
    const { status, data } = await api("GET", `api/unmarked?${params}`);
    if (token !== tracks.loading) return;
    if (status !== 200) {
      show($("[data-tracks-error]"), errorOf(status, data));
      tracks.items = [];
      tracks.count = 0;
    } else {
      show($("[data-tracks-error]"), "");
      if (data.items.length === 0 && tracks.offset > 0 && data.count > 0) {
        tracks.offset = lastOffset(data.count);
        loadTracks(); // the page emptied (tracks were marked): show the last one
        return;
      }
      tracks.items = data.items;
      tracks.count = data.count;
    }
    renderTracks();
  }

  function lastOffset(count) {
    return Math.max(0, Math.floor((count - 1) / size()) * size());
  }

  function scopeWords() {
    return { unmarked: "not yet done", marked: "done", all: "all tracks" }[scopeSelect.value];
  }

  function renderTracks() {
    const first = tracks.count ? tracks.offset + 1 : 0;
    const last = tracks.offset + tracks.items.length;
    $("[data-tracks-caption]").textContent =
      `Tracks for ${opSelect.value} (${scopeWords()}): ${n(first)}–${n(last)} of ${n(tracks.count)}`;
    trackBody.replaceChildren(...tracks.items.map(trackRow));
    if (tracks.items.length === 0) {
      const row = el("tr", null, { role: "row" });
      row.append(el("td", tracks.count ? "" : "No tracks match.", { colspan: "6", role: "cell" }));
      trackBody.append(row);
    }
    const pages = Math.max(1, Math.ceil(tracks.count / size()));
    const pageNumber = Math.floor(tracks.offset / size()) + 1;
    $("[data-page-info]").textContent = `Page ${n(pageNumber)} of ${n(pages)}`;
    const atStart = tracks.offset === 0;
    const atEnd = tracks.offset + size() >= tracks.count;
    $("[data-action=prev]").disabled = $("[data-action=first]").disabled = atStart;
    $("[data-action=next]").disabled = $("[data-action=last]").disabled = atEnd;
    $("[data-matching-count]").textContent = n(tracks.count);
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
      row.append(el("td", value, { "data-label": label, role: "cell", class: "tag" }));
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
    const count = selectedCount();
    $("[data-selected-count]").textContent = tracks.allMatching
      ? `All ${plural(tracks.count, "matching track")} selected`
      : (count ? `${plural(count, "track")} selected` : "No tracks selected");
    renderActions();
  }

  // The buttons say what they act on, and are off while the box holds an unapplied edit.
  function renderActions() {
    const edited = stale();
    const picked = selectedCount();
    for (const button of document.querySelectorAll("button[data-op]")) {
      const op = button.dataset.op;
      const verb = button.dataset.verb;
      const matching = counts[op];
      button.textContent = picked
        ? `${verb} ${n(picked)} selected`
        : `${verb} all ${matching === undefined || matching === null ? "" : n(matching) + " "}matching`;
      button.disabled = readonly || edited; // none matching: the confirmation says so
      describe(button, edited);
    }
    for (const action of ["mark", "unmark"]) {
      const button = $(`[data-action=${action}]`);
      button.disabled = readonly || edited || picked === 0;
      describe(button, edited);
    }
  }

  function describe(button, edited) {
    const reasons = [];
    if (readonly) reasons.push("readonly-note");
    if (edited) reasons.push("query-stale");
    if (reasons.length) button.setAttribute("aria-describedby", reasons.join(" "));
    else button.removeAttribute("aria-describedby");
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

  // "All matching" in the table's operation and scope, as a query the API takes.
  function scopedQuery() {
    const op = opSelect.value;
    const term = { unmarked: `unmarked:${op}`, marked: `^unmarked:${op}`, all: "" }[scopeSelect.value];
    return [inForce, term].filter(Boolean).join(" ");
  }

  function markBody(op) {
    return tracks.allMatching
      ? { op, query: inForce, scope: scopeSelect.value, all: true }
      : { op, ids: [...tracks.selected] };
  }

  function askToChangeMarkers(action) {
    const count = selectedCount();
    const op = opSelect.value;
    const body = markBody(op);
    const run = () => changeMarkers(action, body);
    if (count <= size()) {
      run();
      return;
    }
    const verb = action === "mark" ? "Mark" : "Unmark";
    openConfirm({
      title: `${verb} ${plural(count, "track")} for ${op}?`,
      what: action === "mark"
        ? `They will count as done for ${op} without being processed: no file moves, no tag changes.`
        : `They will count as not done for ${op}, so the next ${op} job includes them. No file changes.`,
      plan: { moves: 0, retags: 0, failures: 0, unchanged: count, complete: true, count,
        note: "No file is opened or changed: only the markers in the library." },
      button: `${verb} ${plural(count, "track")}`,
      opener: $(`[data-action=${action}]`),
      confirmed: run,
    });
  }

  async function changeMarkers(action, body) {
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
    const changes = Object.entries(data.changed).filter(([, count]) => count > 0)
      .map(([field, count]) => `${field} ${action === "mark" ? "set on" : "cleared from"} ${n(count)}`);
    const text = `${action === "mark" ? "Marked as done" : "Unmarked"} for ${data.op}: `
      + `${plural(data.matched, "track")} matched; ${changes.length ? changes.join(", ") : "nothing changed"}.`;
    result.textContent = text;
    announce(text);
    clearSelection();
    renderSelection(); // at once: the boxes on screen must not say otherwise until the reload
    await Promise.all([refreshCounts(), loadTracks()]);
  }

  async function preview() {
    const button = $("[data-action=preview]");
    button.disabled = true;
    const result = $("[data-result]");
    result.textContent = "Computing the preview…";
    const params = trackParams({ limit: String(Math.min(size(), 200)), offset: String(tracks.offset) });
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
      if (item.error || Object.keys(item.changes).length || (item.dest && item.dest !== item.file)) changing += 1;
      cell.replaceChildren(changeList(item));
      cell.hidden = false;
    }
    const failing = data.items.filter((item) => item.error && !item.skipped).length;
    const text = `Preview for ${data.op} of ${plural(data.items.length, "track")} on this page `
      + `(of ${n(data.count)}): ${n(changing)} would change${failing ? `, ${n(failing)} of them would fail` : ""}. `
      + "Nothing has been changed; a job shows its whole plan before it starts.";
    result.textContent = text;
    announce(text);
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
    if (status !== 200) return null;
    const jobs = data.jobs.slice(0, JOBS_SHOWN);
    // Redrawn rows are new elements: a keyboard user on one keeps their place.
    const focusedRow = document.activeElement ? document.activeElement.closest("[data-job-row]") : null;
    $("[data-jobs-body]").replaceChildren(...jobs.map(jobRow));
    if (focusedRow) {
      const again = $(`[data-job-row][data-job="${focusedRow.dataset.job}"] button`);
      if (again) again.focus();
    }
    $("[data-jobs-empty]").hidden = jobs.length > 0;
    return data.jobs;
  }

  // An undo says which job it undid ("undo of job 3"); other jobs, their operation.
  function opWords(job) {
    return job.op === "undo" && job.undoes ? `undo of job ${job.undoes}` : job.op;
  }

  function statusWords(job) {
    if (job.status === "completed" && job.failed) return `completed with ${plural(job.failed, "failure")}`;
    return job.status;
  }

  function jobRow(job) {
    const row = el("tr", null, { "data-job-row": "", "data-job": String(job.job), role: "row" });
    const open = el("button", `Job ${job.job}`, {
      type: "button", "data-action": "open-job", "aria-label": `Open the record of job ${job.job}`,
    });
    const first = el("td", null, { "data-label": "Job", role: "cell" });
    first.append(open);
    const tally = `${n(job.succeeded)} succeeded, ${n(job.failed)} failed, ${n(job.skipped)} skipped of ${n(job.total)}`;
    const time = el("time", when(job.created), { datetime: new Date(job.created * 1000).toISOString() });
    const whenCell = el("td", null, { "data-label": "When", role: "cell" });
    whenCell.append(time);
    const warn = job.status === "completed" && job.failed > 0;
    row.append(first,
      el("td", statusWords(job), { "data-label": "Status", "data-status": warn ? "warning" : job.status, role: "cell" }),
      el("td", opWords(job), { "data-label": "Operation", role: "cell" }),
      el("td", job.origin, { "data-label": "Origin", role: "cell" }),
      el("td", tally, { "data-label": "Items", role: "cell" }),
      whenCell,
      el("td", took(job), { "data-label": "How long", role: "cell" }));
    row.addEventListener("click", () => openRecord(job.job));
    return row;
  }

  async function openRecord(jobId, filter) {
    // The list is redrawn meanwhile: focus goes back to the job's row as it is then.
    opener = () => $(`[data-job-row][data-job="${jobId}"] button`);
    await attach(jobId, "", true, filter);
  }

  // --- a job's record (in the dialog) ----------------------------------------------

  const recordStatus = $("select[name=record-status]");

  let recordLoads = 0; // a token: only the latest request is drawn

  async function loadRecord(reset) {
    if (!state) return;
    const token = ++recordLoads;
    const list = $("[data-record-items]");
    const jobId = state.job;
    const filter = recordStatus.value;
    const params = new URLSearchParams({ limit: String(RECORD_PAGE), offset: String(reset ? 0 : list.children.length) });
    if (filter) params.set("status", filter);
    const { status, data } = await api("GET", `api/jobs/${jobId}/items?${params}`);
    if (token !== recordLoads || !state || state.job !== jobId) return;
    if (status !== 200) {
      show($("[data-record-note]"), errorOf(status, data));
      return;
    }
    if (reset) list.replaceChildren();
    list.append(...data.items.map(recordItem));
    const what = filter ? `${filter} track` : "track";
    const note = data.count === 0
      ? `No ${what}s.`
      : `${plural(data.count, what)}${data.compacted ? " kept: this job's record was compacted to its failed items" : ""}; `
        + `showing ${n(list.children.length)}.`;
    show($("[data-record-note]"), note);
    const more = $("[data-action=record-more]");
    more.hidden = list.children.length >= data.count;
    more.textContent = `Show ${n(Math.min(RECORD_PAGE, data.count - list.children.length))} more`;
  }

  function recordItem(item) {
    const outcome = item.skipped ? "skipped" : item.success ? "succeeded" : "failed";
    const li = el("li", null, { "data-record-item": "", "data-status": outcome, class: outcome });
    li.append(el("strong", `${outcome}: `));
    if (outcome === "failed" || outcome === "skipped") {
      const [reason, detail] = plainReason(item.error, item.file);
      li.append(el("span", reason, { class: "reason" }), " ", el("span", item.file || "", { class: "path" }));
      if (detail && detail !== reason) li.append(el("span", ` (${detail})`, { class: "detail" }));
      return li;
    }
    li.append(el("span", item.file || "", { class: "path" }));
    if (item.dest && item.dest !== item.file) li.append(el("span", " → "), el("span", item.dest, { class: "path" }));
    const changes = Object.entries(item.changes || {});
    if (changes.length) {
      const list = el("ul", null, { class: "changes" });
      for (const [field, [before, after]] of changes) list.append(diffLine(field, before, after));
      li.append(list);
    }
    return li;
  }

  // --- confirming: the whole plan before anything starts ------------------------------

  let confirming = null; // {confirmed, opener, token}

  function openConfirm(request) {
    const token = {};
    confirming = { ...request, token };
    $("[data-confirm-title]").textContent = request.title;
    $("[data-confirm-what]").textContent = request.what;
    show($("[data-confirm-error]"), "");
    $("[data-plan-sample]").replaceChildren();
    $("[data-plan-sample-box]").hidden = true;
    $("[data-plan-causes]").hidden = true;
    const go = $("[data-action=confirm]");
    go.textContent = request.button;
    go.disabled = false;
    for (const name of ["moves", "retags", "failures", "unchanged"]) $(`[data-plan=${name}]`).textContent = "…";
    shownDialog(confirmBox, true);
    modal(true);
    const current = () => confirming !== null && confirming.token === token;
    const failed = (error) => show($("[data-confirm-error]"), `The plan could not be computed: ${error}`);
    if (request.plan) renderPlan(request.plan, request.plan.count);
    else if (request.load) request.load(current, failed);
    else loadPlan(api, request.planBody, current, failed);
    $("[data-action=dismiss]").focus();
  }

  function closeConfirm(focusBack) {
    const request = confirming;
    confirming = null;
    shownDialog(confirmBox, false);
    modal(!dialog.hidden);
    if (focusBack && request && request.opener) request.opener.focus();
  }

  // What a job button acts on: the checked tracks, or all the query in force matches.
  function jobRequest(op, button) {
    const verb = button.dataset.verb;
    const picked = selectedCount();
    if (tracks.allMatching) {
      const query = scopedQuery();
      return {
        title: `${verb} all ${plural(picked, "selected track")}?`,
        body: { op, query, force: true },
        planBody: { op, query, scope: "all" },
      };
    }
    if (picked) {
      const ids = [...tracks.selected];
      const force = scopeSelect.value !== "unmarked";
      return {
        title: `${verb} ${plural(picked, "selected track")}?`,
        body: { op, ids, force },
        planBody: { op, ids, force },
      };
    }
    const matching = counts[op];
    return {
      title: typeof matching === "number" ? `${verb} all ${plural(matching, "matching track")}?`
        : `${verb} all matching tracks?`,
      body: { op, query: inForce },
      planBody: { op, query: inForce, scope: "unmarked" },
    };
  }

  function askToStart(op, button) {
    if (stale()) return; // the buttons are disabled then; a stale edit never acts
    const request = jobRequest(op, button);
    const where = inForce ? ` matching “${inForce}”` : "";
    openConfirm({
      title: request.title,
      what: `This is what the ${op} job will do${request.body.ids ? "" : where}, checked file by file before anything changes.`,
      planBody: request.planBody,
      button: `Start ${op}`,
      opener: button,
      confirmed: () => start(request.body, button),
    });
  }

  // --- starting and attaching ---------------------------------------------------

  async function start(body, button) {
    opener = button;
    show($("[data-start-error]"), "");
    const { status, data } = await api("POST", "api/jobs", body);
    if (status === 202) {
      clearSelection();
      renderSelection();
      await attach(data.job);
      loadJobs();
    } else if (status === 409 && data && data.job) {
      await attach(data.job, "Another job is already running on this library; showing it.");
    } else {
      show($("[data-start-error]"), errorOf(status, data));
      if (button) button.focus();
    }
  }

  async function attach(jobId, note, record, filter) {
    const { status, data } = await api("GET", `api/jobs/${jobId}`);
    if (status !== 200) return;
    state = {
      job: data.job, op: data.op, origin: data.origin, status: data.status, total: data.total,
      current: data.current, succeeded: data.succeeded, failed: data.failed, skipped: data.skipped,
      force: data.force, file: "", errors: data.errors || [], error: data.error, note: note || "",
      undoes: data.undoes, compacted: Boolean(data.compacted), opened: Boolean(record),
      record: Boolean(record) && !ACTIVE.has(data.status), decile: Math.floor((10 * data.current) / (data.total || 1)),
      minimised: false,
    };
    recordStatus.value = filter || "";
    openDialog();
    if (ACTIVE.has(data.status)) {
      announce(data.current
        ? `Job ${data.job} running: ${opWords(data)}, ${n(data.current)} of ${plural(data.total, "track")} done.`
        : `Job ${data.job} started: ${opWords(data)} of ${plural(data.total, "track")}.`);
      state.announced = true;
      follow(data.job, data.last_event);
    }
    else finish(false);
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
      if (!state.announced) announce(`Job ${state.job} started: ${opWords(state)} of ${plural(data.total, "track")}.`);
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
      const decile = Math.floor((10 * data.current) / (data.total || 1));
      if (decile > state.decile && decile < 10) {
        announce(`Job ${state.job}: ${decile * 10} % done, ${n(data.current)} of ${n(data.total)}`
          + `${state.failed ? `, ${plural(state.failed, "failure")} so far` : ""}.`);
      }
      state.decile = decile;
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
      finish(true);
      render();
      announce(`Job ${state.job} ${outcome()[0]}`);
    });
  }

  // The outcome in words, and its style.
  function outcome() {
    const s = state;
    const tally = `${n(s.succeeded)} succeeded, ${n(s.failed)} failed${s.skipped ? `, ${n(s.skipped)} skipped` : ""}.`;
    if (s.status === "completed") {
      if (s.failed) return [`completed with ${plural(s.failed, "failure")}: ${tally}`, "warning"];
      return [`completed: ${tally}`, "ok"];
    }
    if (s.status === "cancelled") return [`cancelled after ${n(s.current)} of ${n(s.total)}: ${tally}`, "warning"];
    if (s.status === "interrupted") return [`interrupted after ${n(s.current)} of ${n(s.total)}: ${tally}`, "bad"];
    return [`failed${s.error ? ` (${s.error})` : ""}: ${tally}`, "bad"];
  }

  function finish(live) {
    if (source) {
      source.close();
      source = null;
    }
    $("[data-action=cancel]").hidden = true;
    $("[data-action=minimise]").hidden = true;
    const close = $("[data-action=close]");
    close.hidden = false;
    if (!state.minimised && (live || !dialog.hidden)) close.focus();
    refreshCounts();
    loadTracks();
    loadJobs();
  }

  // --- the dialogs ---------------------------------------------------------------

  // While a dialog is up, the page behind it is out of reach (and of the Tab key).
  function modal(on) {
    for (const part of [$("header"), $("main"), strip]) {
      if (on) part.setAttribute("inert", "");
      else part.removeAttribute("inert");
    }
    backdrop.hidden = !on;
  }

  function openDialog() {
    shownDialog(dialog, true);
    strip.hidden = true;
    modal(true);
    const cancel = $("[data-action=cancel]");
    cancel.hidden = false;
    cancel.disabled = readonly;
    $("[data-action=minimise]").hidden = false;
    $("[data-action=close]").hidden = true;
    $("[data-action=retry-failed]").hidden = true;
    $("[data-action=undo]").hidden = true;
    show($("[data-undo-error]"), "");
    $("[data-job-errors]").replaceChildren();
    $("[data-record-items]").replaceChildren();
    $("[data-job-record]").hidden = true;
    $("[data-action=minimise]").focus();
  }

  function minimise() {
    if (!state || !ACTIVE.has(state.status)) return;
    state.minimised = true;
    shownDialog(dialog, false);
    modal(false);
    strip.hidden = false;
    render();
    $("[data-action=reopen]").focus();
  }

  function reopen() {
    if (!state) return;
    state.minimised = false;
    strip.hidden = true;
    shownDialog(dialog, true);
    modal(true);
    render();
    const target = ACTIVE.has(state.status) ? $("[data-action=minimise]") : $("[data-action=close]");
    target.focus();
  }

  function closeDialog() {
    if (state && ACTIVE.has(state.status)) return; // a running job's dialog is minimised instead
    shownDialog(dialog, false);
    strip.hidden = true;
    modal(false);
    state = null;
    const target = typeof opener === "function" ? opener() : opener;
    if (target && target.isConnected && !target.disabled) target.focus();
    else queryBox.focus();
  }

  function render() {
    dirty = false;
    if (!state) return;
    const active = ACTIVE.has(state.status);
    const percent = state.total ? Math.floor((100 * state.current) / state.total) : (active ? 0 : 100);
    $("[data-job-id]").textContent = String(state.job);
    $("[data-job-op]").textContent = opWords(state);
    $("[data-job-origin]").textContent = `started from ${state.origin}${state.note ? ". " + state.note : ""}`;
    const bar = $("[data-progress]");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${n(state.current)} of ${n(state.total)} items`);
    $("[data-progress-bar]").style.width = `${percent}%`;
    $("[data-job-current]").textContent = `${n(state.current)} / ${n(state.total)}`;
    const status = $("[data-job-status]");
    status.textContent = state.status;
    status.dataset.jobStatus = state.status;
    const result = $("[data-job-outcome]");
    if (active) {
      result.hidden = true;
    } else {
      const [words, style] = outcome();
      result.textContent = words[0].toUpperCase() + words.slice(1);
      result.dataset.style = style;
      result.hidden = false;
    }
    $("[data-job-file]").textContent = state.file || "–";
    $("[data-job-succeeded]").textContent = n(state.succeeded);
    $("[data-job-failed]").textContent = n(state.failed);
    $("[data-job-skipped]").textContent = n(state.skipped);
    $("[data-job-record]").hidden = !state.record;
    $("[data-action=retry-failed]").hidden = active || readonly || state.failed === 0 || state.errors.length === 0;
    renderUndo(active);
    renderErrors();
    show($("[data-job-error]"), state.error || "");
    $("[data-strip-text]").textContent = active
      ? `Job ${state.job} (${opWords(state)}): ${n(state.current)} / ${n(state.total)}, ${n(state.failed)} failed`
      : `Job ${state.job} ${outcome()[0]}`;
  }

  // A job opened from the list can be undone once it has ended; when it cannot, the button says why.
  function renderUndo(active) {
    const button = $("[data-action=undo]");
    const why = $("[data-undo-why]");
    button.hidden = !state.opened;
    button.textContent = state.op === "undo" ? `Undo job ${state.job} (redo job ${state.undoes})` : `Undo job ${state.job}`;
    let reason = "";
    if (readonly) reason = "This server is read-only, so no job can be undone here.";
    else if (active) reason = `Job ${state.job} is still ${state.status}: it can be undone once it has ended.`;
    else if (state.compacted) {
      reason = `Job ${state.job} can no longer be undone: its record was compacted to its failed tracks `
        + "to keep the job store within job_history_mb.";
    }
    button.disabled = Boolean(reason);
    show(why, state.opened ? reason : "");
    if (reason && state.opened) button.setAttribute("aria-describedby", "undo-why");
    else button.removeAttribute("aria-describedby");
  }

  // Undoing asks first, with the undo's plan; the record's dialog comes back if dismissed.
  function askToUndo() {
    if (!state || ACTIVE.has(state.status)) return;
    const jobId = state.job;
    const button = $("[data-action=undo]");
    show($("[data-undo-error]"), "");
    shownDialog(dialog, false);
    openConfirm({
      title: state.op === "undo" ? `Undo job ${jobId}, redoing job ${state.undoes}?` : `Undo job ${jobId} (${state.op})?`,
      what: `Each track job ${jobId} changed goes back as the job found it: its path, the tags and fields the `
        + "job changed, and its markers. Tracks changed since are left alone and reported.",
      load: (current, failed) => loadUndoPlan(api, jobId, current, (error) => { // 400: it cannot be undone
        failed(error);
        $("[data-action=confirm]").disabled = true;
      }),
      button: `Undo job ${jobId}`,
      opener: button,
      confirmed: () => startUndo(jobId),
      dismissed: () => { shownDialog(dialog, true); modal(true); button.focus(); },
    });
  }

  async function startUndo(jobId) {
    const { status, data } = await api("POST", `api/jobs/${jobId}/undo`);
    if (status === 202) {
      await attach(data.job);
      loadJobs();
      return;
    }
    // Refused (cannot be undone, another job runs): said in words on the record it came from.
    shownDialog(dialog, true);
    modal(true);
    const words = status === 409
      ? `Job ${jobId} was not undone: ${errorOf(status, data)}. Undo it once that job has ended.`
      : `Job ${jobId} was not undone: ${errorOf(status, data)}`;
    show($("[data-undo-error]"), words);
    announce(words);
    const button = $("[data-action=undo]");
    if (!button.disabled) button.focus();
    else $("[data-action=close]").focus();
  }

  function renderErrors() {
    const list = $("[data-job-errors]");
    const shownErrors = state.errors.slice(0, MAX_ERRORS_SHOWN);
    // A record lists the failed items itself, first.
    $("[data-job-errors-box]").hidden = state.record || state.errors.length === 0;
    if (list.children.length !== shownErrors.length) list.replaceChildren(...shownErrors.map(failureItem));
    const more = $("[data-action=show-failures]");
    const hidden = Math.max(0, state.failed - shownErrors.length);
    more.hidden = hidden === 0 || ACTIVE.has(state.status);
    more.textContent = `… and ${plural(hidden, "more failed track")}: show them all`;
  }

  async function retryFailed() {
    if (!state) return;
    const ids = [...new Set(state.errors.map((entry) => entry.item_id))];
    if (!ids.length) return;
    const op = state.op;
    const force = Boolean(state.force);
    const button = $("[data-action=retry-failed]");
    const previous = state;
    shownDialog(dialog, false);
    openConfirm({
      title: `Retry the ${plural(ids.length, "failed track")} of job ${previous.job}?`,
      what: `A new ${op} job over exactly the tracks that failed. This is what it will do now:`,
      planBody: { op, ids, force },
      button: `Retry ${plural(ids.length, "track")}`,
      opener: button,
      confirmed: () => start({ op, ids, force }, null),
      dismissed: () => { shownDialog(dialog, true); modal(true); button.focus(); },
    });
  }

  // Tab and Shift+Tab go round inside an open dialog.
  function trapFocus(e, box) {
    const focusable = [...box.querySelectorAll("button, select, input, summary, a[href], [tabindex='0']")]
      .filter((node) => !node.disabled && node.offsetParent !== null && !node.closest("[hidden]"));
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    const inside = box.contains(document.activeElement);
    if (e.shiftKey && (document.activeElement === first || !inside)) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (document.activeElement === last || !inside)) {
      e.preventDefault();
      first.focus();
    }
  }

  // --- wiring ---------------------------------------------------------------------

  for (const button of document.querySelectorAll("button[data-op]")) {
    button.addEventListener("click", () => askToStart(button.dataset.op, button));
  }
  $("[data-action=cancel]").addEventListener("click", async () => {
    if (!state) return;
    $("[data-action=cancel]").disabled = true;
    await api("POST", `api/jobs/${state.job}/cancel`);
  });
  $("[data-action=close]").addEventListener("click", closeDialog);
  $("[data-action=minimise]").addEventListener("click", minimise);
  $("[data-action=reopen]").addEventListener("click", reopen);
  $("[data-action=retry-failed]").addEventListener("click", retryFailed);
  $("[data-action=undo]").addEventListener("click", askToUndo);
  $("[data-action=show-failures]").addEventListener("click", () => {
    if (!state) return;
    state.record = true;
    recordStatus.value = "failed";
    render();
    loadRecord(true);
    recordStatus.focus();
  });
  recordStatus.addEventListener("change", () => loadRecord(true));
  $("[data-action=record-more]").addEventListener("click", () => loadRecord(false));
  $("[data-action=confirm]").addEventListener("click", () => {
    const request = confirming;
    if (!request) return;
    closeConfirm(false);
    request.confirmed();
  });
  $("[data-action=dismiss]").addEventListener("click", () => {
    const request = confirming;
    closeConfirm(!(request && request.dismissed));
    if (request && request.dismissed) request.dismissed();
  });
  $("[data-action=mark]").addEventListener("click", () => askToChangeMarkers("mark"));
  $("[data-action=unmark]").addEventListener("click", () => askToChangeMarkers("unmark"));
  $("[data-action=preview]").addEventListener("click", preview);
  const go = (offset) => { tracks.offset = offset; loadTracks(); };
  $("[data-action=first]").addEventListener("click", () => go(0));
  $("[data-action=prev]").addEventListener("click", () => go(Math.max(0, tracks.offset - size())));
  $("[data-action=next]").addEventListener("click", () => go(tracks.offset + size()));
  $("[data-action=last]").addEventListener("click", () => go(lastOffset(tracks.count)));
  pageSize.addEventListener("change", () => go(Math.floor(tracks.offset / size()) * size()));
  opSelect.addEventListener("change", reloadTracks);
  scopeSelect.addEventListener("change", reloadTracks);
  document.addEventListener("keydown", (e) => {
    const box = !confirmBox.hidden ? confirmBox : (!dialog.hidden ? dialog : null);
    if (!box) return;
    if (e.key === "Tab") trapFocus(e, box);
    if (e.key !== "Escape") return;
    if (box === confirmBox) $("[data-action=dismiss]").click();
    else if (state && ACTIVE.has(state.status)) minimise();
    else closeDialog();
  });
  $("#query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    inForce = queryBox.value.trim();
    renderQuery();
    reloadTracks();
    refreshCounts().then(() => {
      if (typeof counts.process === "number") {
        announce(`Query in force: ${inForce || "none"}. ${plural(counts.process, "track")} not yet processed match.`);
      }
    });
  });
  setInterval(() => { if (dirty) render(); }, RENDER_EVERY_MS);

  // A reload, a second tab, or a job started elsewhere (the CLI, another
  // browser): show the running job if there is one.
  (async () => {
    queryBox.value = "";
    renderQuery();
    loadTracks();
    await refreshCounts();
    const jobs = await loadJobs();
    const running = jobs && jobs.find((job) => ACTIVE.has(job.status));
    if (running) await attach(running.job);
  })();
})();
