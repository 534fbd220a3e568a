// The confirmation's numbers: a whole job's plan, asked for a slice at a time
// (POST /api/plan with offset and limit: a small first slice so numbers are on
// screen at once, then larger ones), added up and shown as it fills in; or an
// undo's plan (GET /api/jobs/ID/undo), in one answer.
"use strict";

window.unmarkedPlan = (() => {
  const $ = (selector) => document.querySelector(selector);
  const { el, n, plural, changeList, plainReason } = window.unmarkedText;
  const PLAN_FIRST = 200;
  const PLAN_SLICE = 2000;

  // The plan, a slice at a time: a small first slice, then larger ones, added up.
  // ``current()`` says whether the confirmation that asked is still open.
  async function loadPlan(api, body, current, failed) {
    const total = { moves: 0, retags: 0, unchanged: 0, failures: {}, sample: [], scanned: 0 };
    let offset = 0;
    let limit = PLAN_FIRST;
    for (;;) {
      const { status, data } = await api("POST", "api/plan", { ...body, offset, limit });
      if (!current()) return; // dismissed meanwhile
      if (status !== 200) {
        failed((data && data.error) || `the server answered ${status}`);
        return;
      }
      total.moves += data.moves;
      total.retags += data.retags;
      total.unchanged += data.unchanged;
      total.scanned += data.scanned;
      for (const [cause, count] of Object.entries(data.failures)) {
        total.failures[cause] = (total.failures[cause] || 0) + count;
      }
      for (const entry of data.sample) {
        if (total.sample.length < 12 || (entry.error && total.sample.filter((s) => s.error).length < 6)) {
          total.sample.push(entry);
        }
      }
      const failures = Object.values(total.failures).reduce((a, b) => a + b, 0);
      renderPlan({ ...total, failures, causes: total.failures, complete: data.next === null }, data.count);
      if (data.next === null) return;
      offset = data.next;
      limit = PLAN_SLICE;
    }
  }

  // An undo's plan (GET /api/jobs/ID/undo): one answer, shown as a job's plan is.
  async function loadUndoPlan(api, jobId, current, failed) {
    const { status, data } = await api("GET", `api/jobs/${jobId}/undo`);
    if (!current()) return; // dismissed meanwhile
    if (status !== 200) {
      failed((data && data.error) || `the server answered ${status}`);
      return;
    }
    const failures = Object.values(data.failures).reduce((a, b) => a + b, 0);
    renderPlan({
      ...data, failures, causes: data.failures, words: UNDO_CAUSES, complete: true,
      note: `All ${plural(data.count, "track")} job ${jobId} changed checked against the library as it is now: `
        + "a track changed since the job is left as it is. Nothing has changed yet.",
    }, data.count);
  }

  const CAUSES = { // [one, many]
    missing: ["missing file", "missing files"],
    unreadable: ["file that cannot be read as audio", "files that cannot be read as audio"],
    not_writable: ["file that cannot be written", "files that cannot be written"],
    destination_taken: ["destination another file holds (it would get a numbered name)",
      "destinations another file holds (they would get a numbered name)"],
  };

  const UNDO_CAUSES = {
    changed: ["track changed since the job (left as it is)", "tracks changed since the job (left as they are)"],
    destination_taken: ["track whose old place another file now holds (it stays where it is)",
      "tracks whose old places other files now hold (they stay where they are)"],
    missing: CAUSES.missing,
    unrecorded: ["track the job's record does not describe (left as it is)",
      "tracks the job's record does not describe (left as they are)"],
  };

  function renderPlan(plan, count) {
    $("[data-plan=moves]").textContent = n(plan.moves);
    $("[data-plan=retags]").textContent = n(plan.retags);
    $("[data-plan=failures]").textContent = n(plan.failures);
    $("[data-plan=unchanged]").textContent = n(plan.unchanged);
    const causes = $("[data-plan-causes]");
    const entries = Object.entries(plan.causes || {}).filter(([, c]) => c > 0);
    causes.replaceChildren(...entries.map(([cause, c]) => el("li",
      `${n(c)} ${((plan.words || CAUSES)[cause] || [cause, cause])[c === 1 ? 0 : 1]}`, { "data-cause": cause })));
    causes.hidden = entries.length === 0;
    const scanned = plan.scanned === undefined ? count : plan.scanned;
    $("[data-plan-progress]").textContent = plan.note || (plan.complete
      ? `All ${plural(count, "track")} checked: files to retag read and opened for writing, files to move `
        + "tested for moving, destinations looked at. Nothing has changed yet."
      : `Checked ${n(scanned)} of ${plural(count, "track")} so far…`);
    $("[data-action=confirm]").disabled = count === 0;
    if (count === 0) $("[data-plan-progress]").textContent = "No tracks: there is nothing to do.";
    const sample = plan.sample || [];
    $("[data-plan-sample-box]").hidden = sample.length === 0;
    $("[data-plan-sample]").replaceChildren(...sample.map((entry) => {
      const li = el("li", null, { "data-plan-item": String(entry.id) });
      li.append(el("span", entry.file || "", { class: "path" }));
      if (entry.error) {
        const [reason] = plainReason(entry.error, entry.file);
        li.append(el("p", `would fail: ${reason}`, { class: "bad" }));
      } else {
        li.append(changeList(entry));
      }
      return li;
    }));
  }

  return { loadPlan, loadUndoPlan, renderPlan };
})();
