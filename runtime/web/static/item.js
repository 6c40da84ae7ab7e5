// One item: the 1,024 px rendition (the original on demand), what the analysis found, the text
// in the image, every analysis version, and the actions: analyze again, download, delete.

import { api } from "./api.js";
import { $, h, toast } from "./dom.js";
import { go } from "./router.js";
import { onItem, unwatch, watch } from "./watch.js";
import {
  bytes,
  duplicateOf,
  failureText,
  isDuplicate,
  label,
  PENDING,
  STATUS,
  when,
} from "./words.js";

let shown = null; // { item, analyses, version, pinned: the person chose that version }

function value(v) {
  if (Array.isArray(v)) {
    return v.length ? h("ul", { class: "chips" }, v.map((x) => h("li", {}, String(x)))) : null;
  }
  if (v === null || v === undefined || v === "") return null;
  return String(v);
}

function rows(object, skip) {
  const out = [];
  for (const [key, v] of Object.entries(object ?? {})) {
    if (skip.has(key)) continue;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      out.push(...rows(v, skip)); // sections (media metadata, image details) read as one list
      continue;
    }
    const rendered = value(v);
    if (rendered !== null) out.push(h("dt", {}, label(key)), h("dd", {}, rendered));
  }
  return out;
}

function fields(object, skip = new Set()) {
  const found = rows(object, skip);
  return found.length ? h("dl", { class: "fields" }, found) : null;
}

function status(item) {
  if (isDuplicate(item)) {
    const earlier = duplicateOf(item);
    return h(
      "p",
      { class: "status status-duplicate" },
      "Already in your collection: the same image was uploaded before. ",
      earlier ? h("a", { href: `/?item=${earlier}`, "data-nav": true }, "See the earlier one") : null,
    );
  }
  if (item.status === "failed") {
    return h("p", { class: "status status-failed", role: "alert" }, failureText(item.failure));
  }
  if (item.status === "ready") return h("p", { class: "status status-ready" }, "Ready and searchable.");
  return h("p", { class: "status status-pending" }, `${STATUS[item.status] ?? item.status}…`);
}

function image(item, result) {
  const large = item.urls.thumbnails.thumb_1024 ?? item.urls.thumbnails.thumb_256;
  const alt = result?.headline || item.file_name || "The image";
  const img = large ? h("img", { src: large, alt, id: "item-image" }) : h("div", { class: "placeholder large" });
  const actions = h("div", { class: "image-actions" });
  if (item.urls.original) {
    actions.append(
      h(
        "button",
        {
          type: "button",
          onclick: (event) => {
            img.src = item.urls.original;
            event.target.disabled = true;
            event.target.textContent = "Showing the original";
          },
        },
        "Show the original",
      ),
    );
  }
  if (item.urls.download) {
    actions.append(h("a", { href: item.urls.download, class: "button", download: item.file_name || "" }, "Download"));
  }
  return h("figure", { class: "item-image" }, img, actions);
}

function versions() {
  const { analyses, version } = shown;
  if (!analyses.length) return null;
  return h(
    "section",
    { "aria-labelledby": "versions-title" },
    h("h2", { id: "versions-title" }, "Analysis versions"),
    h(
      "ol",
      { class: "versions", reversed: true },
      analyses.map((a) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "link-button",
              "aria-current": a.version === version ? "true" : false,
              onclick: () => {
                shown.version = a.version;
                shown.pinned = a.version !== analyses[0].version;
                draw();
              },
            },
            `Version ${a.version}`,
          ),
          ` · ${when(a.created_at)} · ${a.provider === "local" ? "offline analyzer" : a.provider} (${a.model})`,
        ),
      ),
    ),
  );
}

const SHOWN_ELSEWHERE = new Set(["headline", "summary", "category", "extracted_text"]);

function describe(result) {
  const list = fields(result, SHOWN_ELSEWHERE);
  if (!list) return null;
  return h(
    "section",
    { "aria-labelledby": "details-title" },
    h("h2", { id: "details-title" }, "What it shows"),
    list,
  );
}

function draw() {
  const { item, analyses, version } = shown;
  const analysis = analyses.find((a) => a.version === version) ?? item.analysis;
  const result = analysis?.result ?? {};
  const details = result.image_details ?? {};
  const text = (details.extracted_text ?? []).join("\n");
  const view = $("view-item");
  const busy = PENDING.has(item.status);
  view.replaceChildren(
    h("p", { class: "back" }, h("a", { href: "/", "data-nav": true }, "← Your collection")),
    h(
      "div",
      { class: "item-layout" },
      image(item, result),
      h(
        "div",
        { class: "item-info" },
        result.category ? h("p", { class: "eyebrow" }, result.category) : null,
        h("h1", { id: "item-title", tabindex: "-1" }, result.headline || item.file_name || "Untitled"),
        h("div", { id: "item-status", "aria-live": "polite" }, status(item)),
        (item.warnings ?? []).map((w) => h("p", { class: "warning" }, w.detail)),
        result.summary ? h("p", { class: "summary" }, result.summary) : null,
        h(
          "div",
          { class: "actions" },
          h(
            "button",
            { type: "button", id: "reanalyze", disabled: busy || !item.analysis && item.status !== "failed", onclick: reanalyze },
            busy && item.status === "analyzing" ? "Analyzing…" : "Analyze again",
          ),
          h("button", { type: "button", id: "delete", class: "danger", onclick: confirmDelete }, "Delete…"),
        ),
        analysis && analysis.version !== item.analysis?.version
          ? h("p", { class: "notice" }, `You are looking at version ${analysis.version}, not the latest.`)
          : null,
        describe(result),
        text
          ? h("section", { "aria-labelledby": "text-title" }, h("h2", { id: "text-title" }, "Text in the image"),
              h("pre", { class: "extracted", tabindex: "0" }, text))
          : null,
        h(
          "section",
          { "aria-labelledby": "file-title" },
          h("h2", { id: "file-title" }, "File"),
          fields({
            name: item.file_name,
            type: item.content_type,
            size: bytes(item.size),
            dimensions: item.width ? `${item.width} × ${item.height} px` : null,
            uploaded: when(item.created_at),
            ready: when(item.ready_at),
          }),
        ),
        versions(),
      ),
    ),
  );
  document.title = `${result.headline || item.file_name || "Item"} – Collections`;
}

async function load(id) {
  const [item, list] = await Promise.all([api.item(id), api.analyses(id)]);
  const latest = list.analyses[0]?.version ?? null;
  const keep = shown?.item.id === id && shown.pinned;
  shown = {
    item,
    analyses: list.analyses,
    version: keep ? shown.version : latest,
    pinned: Boolean(keep),
  };
  draw();
  watch(item);
}

async function reanalyze() {
  const { item } = shown;
  try {
    const moved = await api.reanalyze(item.id);
    shown.item = { ...shown.item, status: moved.status };
    draw();
    watch(moved);
    toast("Analyzing it again; the new version appears when it is ready.");
  } catch (error) {
    toast(error.message);
  }
}

function confirmDelete() {
  const dialog = $("confirm-delete");
  dialog.showModal();
  $("confirm-cancel").focus();
}

async function remove() {
  const { item } = shown;
  $("confirm-delete").close();
  try {
    await api.remove(item.id);
    unwatch(item.id);
    toast(`Deleted “${item.file_name || "the item"}”.`);
    go({});
  } catch (error) {
    toast(error.message);
  }
}

onItem((item) => {
  if (!shown || item.id !== shown.item.id || $("view-item").hidden) return;
  const finished = !PENDING.has(item.status);
  if (finished) load(item.id).catch(() => {});
  else {
    shown.item = { ...shown.item, status: item.status };
    $("item-status").replaceChildren(status(shown.item));
  }
});

export async function show(id) {
  const view = $("view-item");
  shown = null; // a visit starts at the latest version
  try {
    await load(id);
    $("item-title").focus();
  } catch (error) {
    shown = null;
    const missing = error.status === 404 || error.status === 422;
    view.replaceChildren(
      h("p", { class: "back" }, h("a", { href: "/", "data-nav": true }, "← Your collection")),
      h("h1", { id: "item-title", tabindex: "-1" }, missing ? "No such item" : "This item cannot be shown"),
      h("p", {}, missing ? "It is not in your collection: it was deleted, or the link belongs to someone else." : error.message),
    );
    document.title = "Not found – Collections";
    $("item-title").focus();
  }
}

export function install() {
  $("confirm-ok").addEventListener("click", remove);
  $("confirm-cancel").addEventListener("click", () => $("confirm-delete").close());
}
