// The unmarked page: counts, buttons, and a progress dialog fed by the job's
// Server-Sent Events. Plain browser JavaScript, no build step.
//
// Everything that came from the library (paths, errors) is put in the page as
// text (textContent), never as HTML. Events only update `state`; the DOM is
// redrawn from it at most five times a second, so a 20k-item job cannot
// flood the tab.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const OPS = ["process", "rename", "normalize"];
  const ACTIVE = new Set(["queued", "running"]);
  const MAX_ERRORS_SHOWN = 200;
  const RENDER_EVERY_MS = 200;

  const dialog = $("[data-job-dialog]");
  const backdrop = $("[data-backdrop]");
  const readonly = document.body.dataset.readonly === "true";

  let state = null; // the attached job, as last heard
  let source = null; // its EventSource
  let dirty = false;
  let opener = null; // the button to give focus back to

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (_) { /* 204 or not JSON */ }
    return { status: response.status, data };
  }

  function query() {
    return $("#query").value.trim();
  }

  function show(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
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
        show($("[data-query-error]"), (data && data.error) || `error ${status}`);
      }
    }
  }

  // --- starting and attaching ---------------------------------------------------

  async function start(op, button) {
    opener = button;
    show($("[data-start-error]"), "");
    const { status, data } = await api("POST", "api/jobs", { op, query: query() });
    if (status === 202) {
      await attach(data.job);
    } else if (status === 409 && data && data.job) {
      await attach(data.job, "Another job is already running on this library; showing it.");
    } else {
      show($("[data-start-error]"), (data && data.error) || `The server answered ${status}.`);
    }
  }

  async function attach(jobId, note) {
    const { status, data } = await api("GET", `api/jobs/${jobId}`);
    if (status !== 200) return;
    state = {
      job: data.job, op: data.op, origin: data.origin, status: data.status, total: data.total,
      current: data.current, succeeded: data.succeeded, failed: data.failed, skipped: data.skipped,
      file: "", errors: data.errors || [], error: data.error, note: note || "",
    };
    openDialog();
    if (ACTIVE.has(data.status)) follow(data.job, data.last_event);
    else finish();
    render();
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
    cancel.focus();
  }

  function closeDialog() {
    if (state && ACTIVE.has(state.status)) return; // only a finished job's dialog closes
    dialog.hidden = true;
    backdrop.hidden = true;
    state = null;
    if (opener) opener.focus();
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
    renderErrors();
    show($("[data-job-error]"), state.error || "");
  }

  function renderErrors() {
    const list = $("[data-job-errors]");
    const shown = state.errors.slice(0, MAX_ERRORS_SHOWN);
    $("[data-job-errors-box]").hidden = state.errors.length === 0;
    if (list.children.length === shown.length + (state.errors.length > MAX_ERRORS_SHOWN ? 1 : 0)) return;
    list.replaceChildren(...shown.map((entry) => {
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
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !dialog.hidden) closeDialog();
  });
  $("#query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    refreshCounts();
  });
  setInterval(() => { if (dirty) render(); }, RENDER_EVERY_MS);

  // A reload, a second tab, or a job started elsewhere (the CLI, another
  // browser): show the running job if there is one.
  (async () => {
    await refreshCounts();
    const { status, data } = await api("GET", "api/jobs");
    const running = status === 200 && data.jobs.find((job) => ACTIVE.has(job.status));
    if (running) await attach(running.job);
  })();
})();
