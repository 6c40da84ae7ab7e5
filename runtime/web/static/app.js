// Collections in the browser: sign in, drop images in, watch them become searchable, find them,
// ask about them.

import { currentUser, onSignedOut, resume, signIn, signOut } from "./api.js";
import * as ask from "./ask.js";
import { $, toast } from "./dom.js";
import * as item from "./item.js";
import * as library from "./library.js";
import * as router from "./router.js";
import * as search from "./search.js";
import * as uploads from "./uploads.js";

const config = JSON.parse(document.querySelector('meta[name="collections-config"]').content || "{}");
const VIEWS = [
  "view-signin",
  "view-library",
  "view-results",
  "view-item",
  "view-ask",
  "view-signed-out",
];

function only(view) {
  $("loading").hidden = true;
  for (const id of VIEWS) $(id).hidden = id !== view;
  if (view !== "view-ask") ask.leave();
  const signedIn = Boolean(currentUser());
  $("topbar").hidden = !signedIn;
  $("uploads").hidden = !signedIn || !$("upload-list").children.length;
}

function showSignIn(notice) {
  only("view-signin");
  document.title = "Sign in – Collections";
  const hint = $("signin-hint");
  hint.hidden = !config.signInHint;
  hint.textContent = config.signInHint ?? "";
  const username = $("signin-username");
  if (!username.value && config.username) username.value = config.username;
  $("signin-notice").hidden = !notice;
  $("signin-notice").textContent = notice ?? "";
  (username.value ? $("signin-password") : username).focus();
}

async function route(params) {
  if (!currentUser()) return;
  $("account-name").textContent = currentUser();
  try {
    if (params.get("item")) {
      only("view-item");
      await item.show(params.get("item"));
    } else if (params.get("ask")) {
      only("view-ask");
      await ask.show(params);
    } else if (params.get("q")) {
      only("view-results");
      await search.show(params);
    } else {
      only("view-library");
      document.title = "Your collection – Collections";
      await library.show(params);
    }
  } catch (error) {
    if (error.status !== 401) toast(error.message);
  }
}

function installSignIn() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const error = $("signin-error");
    const button = form.querySelector("button[type=submit]");
    error.hidden = true;
    button.disabled = true;
    try {
      await signIn(form.elements.username.value.trim(), form.elements.password.value);
      form.elements.password.value = "";
      router.render();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      form.elements.password.focus();
    } finally {
      button.disabled = false;
    }
  });
  $("sign-out").addEventListener("click", async () => {
    await signOut();
    showSignIn("You have signed out.");
  });
  $("sign-in-again").addEventListener("click", () => showSignIn());
  onSignedOut(() => {
    only("view-signed-out");
    document.title = "Signed out – Collections";
    $("sign-in-again").focus();
  });
}

function installSearch() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("search-q").value.trim();
    if (q) router.go({ q, mode: $("search-mode").value });
  });
  $("search-mode").addEventListener("change", () => {
    if ($("search-q").value.trim()) $("search-form").requestSubmit();
  });
}

async function start() {
  router.onRoute(route);
  router.start();
  installSignIn();
  installSearch();
  uploads.install(() => Boolean(currentUser()));
  library.install();
  search.install();
  item.install();
  ask.install();
  try {
    if (await resume()) router.render();
    else showSignIn();
  } catch (error) {
    showSignIn(error.message);
  }
}

start();
