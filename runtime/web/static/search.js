// Search results: one box (in the header), a mode, results best first with how well each
// matches, and a plain statement when nothing in the collection is relevant.

import { api } from "./api.js";
import { $, h, itemEntry } from "./dom.js";
import { relevance, when } from "./words.js";

const PAGE = 20;
const MODES = { hybrid: "words and meaning", keyword: "words", semantic: "meaning" };
let state = { q: "", mode: "hybrid", cursor: null, generation: 0 };

function result(hit, mode) {
  const match = relevance(mode, hit.score);
  const title = hit.headline || hit.file_name || "Untitled";
  return itemEntry(
    { class: "result" },
    hit.item_id,
    hit.thumbnail_url,
    h(
      "span",
      { class: "result-text" },
      h("span", { class: "result-title" }, title),
      hit.summary ? h("span", { class: "result-summary" }, hit.summary) : null,
      h(
        "span",
        { class: "card-meta" },
        [hit.category, hit.file_name, when(hit.created_at)].filter(Boolean).join(" · "),
      ),
    ),
    h(
      "span",
      { class: "relevance" },
      h("meter", {
        min: "0",
        max: "1",
        value: match.value.toFixed(3),
        "aria-label": `Relevance: ${match.words}`,
        title: `score ${hit.score.toFixed(3)}`,
      }),
      h("span", { class: "relevance-words" }, match.words),
    ),
  );
}

async function page() {
  const mine = state.generation;
  const more = $("results-more");
  more.disabled = true;
  try {
    const response = await api.search({
      q: state.q,
      mode: state.mode,
      limit: PAGE,
      cursor: state.cursor ?? undefined,
    });
    if (mine !== state.generation) return;
    for (const hit of response.results) $("results").append(result(hit, response.mode));
    state.cursor = response.next_cursor;
    more.hidden = !state.cursor;
    const count = $("results").children.length;
    const box = $("results-empty");
    box.hidden = count > 0;
    if (!count) {
      box.replaceChildren(
        h("h2", {}, "Nothing relevant in your collection"),
        h(
          "p",
          {},
          "No item matches this well enough. Try other words, or search by ",
          state.mode === "keyword" ? "meaning" : "words",
          " instead.",
        ),
      );
    }
    $("results-status").textContent = count
      ? `${count} result${count === 1 ? "" : "s"} for ${state.q}`
      : `Nothing relevant for ${state.q}`;
  } finally {
    more.disabled = false;
  }
}

export async function show(params) {
  const q = params.get("q") ?? "";
  const mode = MODES[params.get("mode")] ? params.get("mode") : "hybrid";
  $("search-q").value = q;
  $("search-mode").value = mode;
  state = { q, mode, cursor: null, generation: state.generation + 1 };
  $("results-title").textContent = `Results for “${q}”`;
  $("results").replaceChildren();
  $("results-empty").hidden = true;
  $("results-more").hidden = true;
  document.title = `${q} – Collections`;
  await page();
}

export function install() {
  $("results-more").addEventListener("click", () => page());
}
