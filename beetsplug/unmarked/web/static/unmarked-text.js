// How the unmarked page shows what came from the library: numbers grouped by
// thousands, tag changes with otherwise invisible blanks and Unicode-form
// changes made visible, and failures in plain words with their path once.
// Everything is built as DOM text (textContent), never as HTML.
"use strict";

window.unmarkedText = (() => {
  const number = new Intl.NumberFormat();
  const n = (value) => number.format(value);

  function el(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function plural(count, word) {
    return `${n(count)} ${word}${count === 1 ? "" : "s"}`;
  }

  // --- showing changes: whitespace and Unicode forms made visible ---------------------

  function shown(value) {
    if (Array.isArray(value)) return value.join("; ");
    return value === null || value === undefined ? "" : String(value);
  }

  // Spaces at the ends and in runs, tabs and other blanks become visible marks;
  // a single space between words stays a space.
  function visible(text) {
    const out = document.createDocumentFragment();
    const parts = text.split(/(^ +| +$| {2,}|[\t\u00a0\u2000-\u200b\u3000]+)/);
    parts.forEach((part, index) => {
      if (!part) return;
      if (index % 2 === 0) { // between the captured blanks
        out.append(part);
        return;
      }
      const mark = [...part].map((c) => (c === " " ? "·" : c === "\t" ? "⇥" : "⍽")).join("");
      out.append(el("span", mark, { class: "ws", title: blankName(part) }));
    });
    return out;
  }

  function blankName(part) {
    if (/^ +$/.test(part)) return part.length === 1 ? "a space" : `${part.length} spaces`;
    if (part.includes("\t")) return "a tab";
    return "a special space";
  }

  function form(text) {
    if (text === text.normalize("NFC")) return text === text.normalize("NFD") ? "" : "NFC";
    return text === text.normalize("NFD") ? "NFD" : "mixed";
  }

  function diffLine(field, before, after) {
    const line = el("li", null, { "data-field": field });
    const old = shown(before);
    const now = shown(after);
    const del = el("del");
    del.append(visible(old));
    const ins = el("ins");
    ins.append(visible(now));
    line.append(el("span", `${field}: `, { class: "field" }), del, el("span", " → ", { class: "arrow" }), ins);
    const was = form(old);
    const is = form(now);
    if (was !== is && was && is && old.normalize("NFC") === now.normalize("NFC")) {
      line.append(el("span", `Unicode form only: ${was} → ${is}`, { class: "form", "data-unicode-form": "" }));
    } else if (was !== is && was && is) {
      line.append(el("span", `also Unicode form ${was} → ${is}`, { class: "form", "data-unicode-form": "" }));
    }
    return line;
  }

  function changeList(item) {
    const list = el("ul", null, { class: "changes" });
    if (item.error) {
      list.append(el("li", item.skipped ? `skipped: ${item.error}` : `would fail: ${item.error}`, { class: "bad" }));
      return list;
    }
    for (const [field, [before, after]] of Object.entries(item.changes || {})) {
      list.append(diffLine(field, before, after));
    }
    if (item.dest && item.dest !== item.file) {
      const line = el("li", null, { "data-field": "path" });
      line.append(el("span", "moves to ", { class: "field" }), el("span", item.dest, { class: "dest" }));
      list.append(line);
    }
    if (!list.children.length) list.append(el("li", "nothing to change"));
    return list;
  }

  // --- failures in plain words ------------------------------------------------------

  const REASONS = [
    [/file not found|No such file/i, "The file is missing."],
    [/Errno 1\]|Operation not permitted/i,
      "The file cannot be changed: the system refuses it (it may be locked or marked immutable)."],
    [/Errno 13\]|Permission denied/i, "No permission to change the file."],
    [/Errno 28\]|No space left/i, "The disk is full."],
    [/Errno 30\]|Read-only file system/i, "The disk holding the file is read-only."],
    [/unreadable|cannot read|error reading|could not read|not a supported|FileTypeError|HeaderNotFound|can't sync/i,
      "The file cannot be read as audio: it is damaged or not in a supported format."],
    [/already done by another run/i, "Another run already did it."],
    [/removed from the library/i, "The track was removed from the library meanwhile."],
  ];

  // (reason, technical detail without the path, which is shown once beside it)
  function plainReason(error, file) {
    const message = String(error || "");
    let detail = message;
    if (file) detail = detail.split(`'${file}'`).join("").split(file).join("");
    detail = detail.replace(/^\s*[:;,-]\s*|\s*[:;,-]\s*$/g, "").replace(/\s{2,}/g, " ").trim();
    for (const [pattern, reason] of REASONS) {
      if (pattern.test(message)) return [reason, /^(file not found|No such file)/i.test(detail) ? "" : detail];
    }
    return [detail || "It failed for an unknown reason.", ""];
  }

  function failureItem(entry) {
    const li = el("li", null, { "data-failure": "", "data-item": String(entry.item_id) });
    const [reason, detail] = plainReason(entry.error, entry.file);
    li.append(el("span", reason, { class: "reason" }), " ", el("span", entry.file || "", { class: "path" }));
    if (detail && detail !== reason) li.append(el("span", ` (${detail})`, { class: "detail" }));
    return li;
  }

  return { el, n, plural, changeList, diffLine, plainReason, failureItem };
})();
