// Ask: questions about the collection, answered by the assistant with the items it used.
// A conversation is a URL (/?ask=<id>); /?ask=new starts one with its first question. Answers
// are asynchronous: the question is stored (202) and its message polled until it is done or
// failed, only while this view is shown and for at most GIVE_UP_MS.

import { api } from "./api.js";
import { $, h, itemEntry, replace } from "./dom.js";
import { go } from "./router.js";
import { when } from "./words.js";

export const NEW = "new";
const MAX_QUESTION = 4000; // AskRequest.content: max_length
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g; // characters the API refuses in a question
const TITLE_CHARS = 80;
const POLL_MS = 1000;
const SLOW_POLL_MS = 3000; // after FAST_FOR_MS: a long answer is a tool loop of model calls
const FAST_FOR_MS = 15_000;
// The API itself reports `timed_out` 60 s past the assistant function's 180 s timeout.
const GIVE_UP_MS = 5 * 60_000;
const ENDED = new Set(["done", "failed"]);
const CUT_SHORT = {
  max_tool_rounds:
    "The assistant stopped at its limit of searches for one question; it may have missed some.",
  token_limit: "The assistant reached its limit for one question; the answer may be incomplete.",
};
const TIME = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });

const state = {
  id: null, // the conversation's id, once it exists
  active: false, // the view is shown
  pending: null, // the id of the message being answered
  sending: false,
  closed: false, // the conversation took its last question, or has ended
  generation: 0, // bumped when the view is left or shows another conversation
  timer: 0,
};

function question() {
  return $("ask-q").value.replace(CONTROL, "").trim();
}

function update() {
  const used = $("ask-q").value.length;
  $("ask-send").disabled = !question() || Boolean(state.pending) || state.sending || state.closed;
  $("ask-count").textContent =
    used > MAX_QUESTION * 0.8
      ? `${used.toLocaleString()} of ${MAX_QUESTION.toLocaleString()} characters.`
      : "";
  $("nav-ask").href = `/?ask=${state.id ?? NEW}`;
}

function stopPolling() {
  state.generation += 1;
  clearTimeout(state.timer);
  state.timer = 0;
  state.pending = null;
}

function clearProblem() {
  $("ask-error").hidden = true;
  $("ask-error").replaceChildren();
}

function problem(...content) {
  replace($("ask-error"), ...content);
  $("ask-error").hidden = false;
}

function startOver() {
  return h(
    "button",
    { type: "button", class: "primary", onclick: () => go({ ask: NEW }) },
    "Start a new conversation",
  );
}

/** The conversation is gone (expired, deleted, or not the caller's): say so, offer a new one. */
function ended() {
  stopPolling();
  state.closed = true;
  state.id = null;
  problem(
    h("h2", {}, "This conversation has ended"),
    h(
      "p",
      {},
      "It is not in your account any more: conversations are deleted a while after they " +
        "start, or the link belongs to someone else. Your collection is not affected.",
    ),
    startOver(),
  );
  update();
}

function itemCitation(cited) {
  return itemEntry(
    { class: "citation" },
    cited.item_id,
    cited.thumbnail_url,
    h(
      "span",
      { class: "citation-text" },
      h("span", { class: "citation-title" }, cited.title || "Untitled"),
      cited.category ? h("span", { class: "card-meta" }, cited.category) : null,
    ),
  );
}

function webCitation(cited) {
  let url = null;
  try {
    url = new URL(cited.url);
  } catch {
    // not a URL: its title only
  }
  const linkable = url && (url.protocol === "https:" || url.protocol === "http:");
  const text = h(
    "span",
    { class: "citation-text" },
    h("span", { class: "citation-title" }, cited.title || url?.host || "A web page"),
    linkable ? h("span", { class: "card-meta" }, `${url.host} · web page, opens a new tab`) : null,
  );
  return h(
    "li",
    { class: "citation citation-web" },
    linkable
      ? h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer" }, text)
      : text,
  );
}

function answerOf(element) {
  return element.querySelector(".answer");
}

function answering(element, note = "") {
  const answer = answerOf(element);
  if (answer.getAttribute("aria-busy") === "true" && answer.dataset.note === note) {
    return; // unchanged: a live region rewritten on every poll would be read out every time
  }
  answer.dataset.note = note;
  answer.setAttribute("aria-busy", "true");
  answer.replaceChildren(h("p", { class: "answering" }, "Answering…", note ? ` ${note}` : ""));
}

function settled(element, ...content) {
  const answer = answerOf(element);
  replace(answer, ...content);
  answer.setAttribute("aria-busy", "false"); // now the live region is read out
}

function fill(element, message) {
  element.dataset.status = message.status;
  if (message.status === "failed") {
    const failure = message.failure ?? {
      reason: "failed",
      message: "The assistant could not answer.",
    };
    settled(
      element,
      h("p", { class: "error" }, `No answer: ${failure.message}`),
      h("p", { class: "hint" }, `Reason: ${failure.reason}`),
      h("button", { type: "button", onclick: () => askAgain(message.question) }, "Ask it again"),
    );
    return;
  }
  const cited = message.citations ?? [];
  settled(
    element,
    h("p", { class: "answer-text" }, message.answer ?? ""),
    CUT_SHORT[message.stop_reason]
      ? h("p", { class: "warning" }, CUT_SHORT[message.stop_reason])
      : null,
    cited.length
      ? h(
          "ul",
          { class: "citations", "aria-label": "What this answer cites" },
          cited.map((c) => (c.kind === "item" && c.item_id ? itemCitation(c) : webCitation(c))),
        )
      : null,
  );
}

function turn(message) {
  const element = h(
    "li",
    { class: "turn", "data-message": message.id, "data-status": message.status },
    h(
      "p",
      { class: "question" },
      h("span", { class: "visually-hidden" }, "You asked: "),
      message.question,
    ),
    h("div", { class: "answer", "aria-live": "polite" }),
  );
  $("ask-turns").append(element);
  if (ENDED.has(message.status)) fill(element, message);
  else answering(element);
  return element;
}

function askAgain(text) {
  $("ask-q").value = text;
  update();
  $("ask-q").focus();
}

/** Polls one message until it ends, the view is left, or GIVE_UP_MS pass. */
function follow(message, element) {
  const conversation = state.id;
  const mine = state.generation;
  const started = Date.now();
  const settle = () => {
    state.pending = null;
    update();
  };
  const tick = async () => {
    state.timer = 0;
    let current = null;
    try {
      current = await api.message(conversation, message.id);
    } catch (error) {
      if (mine !== state.generation) return;
      if (error.status === 401) return settle(); // the page shows the signed-out screen
      if (error.status === 404) return ended();
      if (error.status !== 0 && error.status !== 429 && error.status < 500) {
        const failure = { reason: error.code, message: error.message };
        fill(element, { ...message, status: "failed", failure });
        return settle();
      }
      answering(element, "(Collections does not answer right now; still trying.)");
    }
    if (mine !== state.generation) return;
    if (current && ENDED.has(current.status)) {
      fill(element, current);
      return settle();
    }
    if (current) answering(element);
    const waited = Date.now() - started;
    if (waited >= GIVE_UP_MS) {
      settled(
        element,
        h("p", { class: "error" }, `No answer after ${Math.round(waited / 60_000)} minutes.`),
        h("p", { class: "hint" }, "It may still come: check again in a while, or ask again."),
        h("button", { type: "button", onclick: () => follow(message, element) }, "Check again"),
      );
      return settle();
    }
    state.timer = setTimeout(tick, waited < FAST_FOR_MS ? POLL_MS : SLOW_POLL_MS);
  };
  state.pending = message.id;
  update();
  answering(element);
  state.timer = setTimeout(tick, POLL_MS);
}

function expiry(conversation) {
  $("ask-expiry").textContent = conversation
    ? `This conversation is kept until ${when(conversation.expires_at)}.`
    : "";
}

async function load(id) {
  const mine = state.generation;
  try {
    const conversation = await api.conversation(id);
    if (mine !== state.generation) return;
    $("ask-turns").replaceChildren();
    expiry(conversation);
    let last = null;
    for (const message of conversation.messages) last = { message, element: turn(message) };
    if (last && !ENDED.has(last.message.status)) follow(last.message, last.element);
  } catch (error) {
    if (mine !== state.generation || error.status === 401) return;
    if (error.status === 404 || error.status === 422) ended();
    else problem(h("p", {}, error.message));
  }
}

/** A question the API did not take: why, in its words, and what can be done. */
function refused(error) {
  if (error.status === 401) return;
  if (error.status === 404) {
    ended();
    return;
  }
  if (error.code === "conversation_full") {
    state.closed = true;
    problem(
      h("p", {}, error.message),
      h("p", { class: "hint" }, "Your question stays in the box."),
      startOver(),
    );
    return;
  }
  if (error.code === "daily_budget_exhausted" && error.retryAfter) {
    const at = new Date(Date.now() + error.retryAfter * 1000);
    problem(
      h("p", {}, error.message),
      h("p", { class: "hint" }, `You can ask again from ${TIME.format(at)} (your time).`),
    );
    return;
  }
  problem(h("p", {}, error.message));
  // Another window (or the CLI) is being answered in this conversation: show it and follow it.
  if (error.code === "answer_pending") load(state.id);
}

async function send(event) {
  event.preventDefault();
  const text = question();
  if (!text || state.pending || state.sending || state.closed) return;
  const mine = state.generation;
  state.sending = true;
  update();
  clearProblem();
  try {
    if (!state.id) {
      const title = Array.from(text.replace(/\s+/g, " ")).slice(0, TITLE_CHARS).join("");
      const conversation = await api.startConversation(title);
      if (mine !== state.generation) return;
      state.id = conversation.id;
      expiry(conversation);
      go({ ask: conversation.id }, { replace: true }); // show() keeps this view as it is
    }
    const message = await api.ask(state.id, text);
    if (mine !== state.generation) return;
    $("ask-q").value = "";
    follow(message, turn(message));
  } catch (error) {
    if (mine === state.generation) refused(error);
  } finally {
    state.sending = false;
    update();
  }
}

/** The view for /?ask=<id> or /?ask=new. */
export async function show(params) {
  const id = params.get("ask");
  document.title = "Ask – Collections";
  $("nav-ask").setAttribute("aria-current", "page");
  if (state.active && state.id && id === state.id) return; // the URL caught up with the view
  stopPolling();
  Object.assign(state, { id: id === NEW ? null : id, active: true, sending: false, closed: false });
  $("ask-turns").replaceChildren();
  clearProblem();
  expiry(null);
  update();
  $("ask-q").focus();
  if (state.id) await load(state.id);
}

/** Another view is shown: stop polling (the conversation is reloaded when shown again). */
export function leave() {
  if (!state.active) return;
  stopPolling();
  state.active = false;
  $("nav-ask").removeAttribute("aria-current");
}

export function install() {
  const box = $("ask-q");
  box.maxLength = MAX_QUESTION;
  $("ask-form").addEventListener("submit", send);
  box.addEventListener("input", update);
  box.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    $("ask-form").requestSubmit();
  });
  $("ask-new").addEventListener("click", () => {
    go({ ask: NEW });
    $("ask-q").focus();
  });
}
