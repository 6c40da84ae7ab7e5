// The collection: a grid of thumbnails, newest first, endless scrolling over the cursor API,
// filters by category, status and date (kept in the URL).

import { api } from "./api.js";
import { $, h, itemEntry } from "./dom.js";
import { go } from "./router.js";
import { onItem, watch } from "./watch.js";
import { failureText, isDuplicate, STATUS, when } from "./words.js";

const PAGE = 30;
let filters = {};
let cursor = null;
let loading = null;
let generation = 0;
const cards = new Map(); // id -> <li>
const categories = new Set();

function day(value, offsetDays = 0) {
  // a date input's day (local time) as an RFC 3339 instant
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + offsetDays).toISOString();
}

function query() {
  return {
    limit: PAGE,
    status: filters.status,
    category: filters.category,
    created_from: filters.from ? day(filters.from) : undefined,
    created_to: filters.to ? day(filters.to, 1) : undefined,
  };
}

export function card(item) {
  const title = item.headline || item.file_name || "Untitled";
  const state = isDuplicate(item)
    ? "Already in your collection"
    : item.status === "failed"
      ? `Failed: ${failureText(item.failure)}`
      : item.status !== "ready"
        ? `${STATUS[item.status] ?? item.status}…`
        : null;
  return itemEntry(
    { class: "card", "data-status": item.status },
    item.id,
    item.thumbnail_url,
    h("span", { class: "card-title" }, title),
    h(
      "span",
      { class: "card-meta" },
      [when(item.created_at), item.category].filter(Boolean).join(" · "),
    ),
    state ? h("span", { class: `badge badge-${item.status}` }, state) : null,
  );
}

function place(item, { prepend = false } = {}) {
  const element = card(item);
  const existing = cards.get(item.id);
  if (existing) existing.replaceWith(element);
  else if (prepend) $("grid").prepend(element);
  else $("grid").append(element);
  cards.set(item.id, element);
  if (item.category && !categories.has(item.category)) {
    categories.add(item.category);
    $("category-list").append(h("option", { value: item.category }));
  }
  watch(item);
}

function matches(item) {
  if (filters.status && item.status !== filters.status) return false;
  if (filters.category && (item.category ?? "").toLowerCase() !== filters.category.toLowerCase()) {
    return false;
  }
  return !filters.from && !filters.to;
}

onItem((item) => {
  if (cards.has(item.id)) place(item);
  else if (matches(item) && !$("view-library").hidden) {
    place(item, { prepend: true });
    empty(false);
  }
});

function empty(show) {
  const box = $("library-empty");
  box.hidden = !show;
  if (!show) return;
  box.replaceChildren();
  const filtered = Object.values(filters).some(Boolean);
  if (filtered) {
    box.append(
      h("h2", {}, "Nothing matches these filters"),
      h("p", {}, "Try another category, status or dates, or "),
    );
    box.lastChild.append(
      h("a", { href: "/", "data-nav": true }, "show everything"),
      ".",
    );
  } else {
    box.append(
      h("h2", {}, "Your collection is empty"),
      h(
        "p",
        {},
        "Drop screenshots or photos anywhere on this page, paste one with Ctrl+V, or use Upload. " +
          "Each is read, described and made searchable within moments.",
      ),
    );
  }
}

async function more() {
  if (loading || cursor === undefined) return loading;
  const mine = generation;
  $("load-more").disabled = true;
  loading = api
    .items({ ...query(), cursor: cursor ?? undefined })
    .then((page) => {
      if (mine !== generation) return;
      for (const item of page.items) place(item);
      cursor = page.next_cursor ?? undefined;
      $("load-more").hidden = cursor === undefined;
      empty(cards.size === 0);
      $("library-status").textContent =
        `${cards.size} item${cards.size === 1 ? "" : "s"} shown` + (cursor ? "; more below" : "");
    })
    .finally(() => {
      loading = null;
      $("load-more").disabled = false;
    });
  return loading;
}

export async function show(params) {
  filters = {
    category: params.get("category") ?? "",
    status: params.get("status") ?? "",
    from: params.get("from") ?? "",
    to: params.get("to") ?? "",
  };
  const form = $("filters");
  for (const [name, value] of Object.entries(filters)) form.elements[name].value = value;
  generation += 1;
  cursor = null;
  cards.clear();
  $("grid").replaceChildren();
  $("library-empty").hidden = true;
  $("load-more").hidden = true;
  await more();
}

export function install() {
  const form = $("filters");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    go({ category: data.category.trim(), status: data.status, from: data.from, to: data.to });
  });
  form.addEventListener("reset", () => setTimeout(() => go({}), 0));
  $("load-more").addEventListener("click", () => more());
  // Endless scrolling: the "Load more" button (also there for keyboards) loads itself when it
  // comes into view.
  new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting) && !$("view-library").hidden) more();
    },
    { rootMargin: "600px" },
  ).observe($("load-more"));
}

