// The app's own addresses are query strings on "/": "/?q=…&mode=…" (a search), "/?item=<id>"
// (one item), "/?ask=<conversation id>" or "/?ask=new" (the assistant),
// "/?category=…&status=…&from=…&to=…" (the collection, filtered). Every view is a
// real URL: it can be bookmarked, reloaded and shared, and the back button walks them.

const routes = [];

export function onRoute(listener) {
  routes.push(listener);
}

export function current() {
  return new URLSearchParams(window.location.search);
}

export function go(params, { replace = false } = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const url = query.size ? `/?${query}` : "/";
  if (url !== `${window.location.pathname}${window.location.search}`) {
    window.history[replace ? "replaceState" : "pushState"](null, "", url);
  }
  render();
}

export function render() {
  for (const listener of routes) listener(current());
}

export function start() {
  window.addEventListener("popstate", render);
  // In-app links (data-nav) change the view without reloading the page.
  document.addEventListener("click", (event) => {
    const link = event.target.closest?.("a[data-nav]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    const url = new URL(link.href);
    go(Object.fromEntries(url.searchParams));
  });
}
