// Small DOM helpers. Text always goes in as text nodes (never as HTML), so nothing a user or
// the model wrote can run as markup.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children, skipping the absent ones (null, undefined, false) as h does. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const $ = (id) => document.getElementById(id);

/** An item's thumbnail (decorative: the item's headline is next to it), or a placeholder. */
function thumbnail(url) {
  return h(
    "span",
    { class: "thumb" },
    url
      ? h("img", { src: url, alt: "", loading: "lazy", decoding: "async" })
      : h("span", { class: "placeholder", "aria-hidden": "true" }),
  );
}

/** A list entry (`attributes` on the <li>) whose link opens the item: its thumbnail, then
 * `content`. */
export function itemEntry(attributes, itemId, thumbnailUrl, ...content) {
  return h(
    "li",
    { ...attributes, "data-id": itemId },
    h("a", { href: `/?item=${itemId}`, "data-nav": true }, thumbnail(thumbnailUrl), ...content),
  );
}

let toastTimer = 0;

/** A short message in the polite live region (read out by screen readers). */
export function toast(message) {
  const region = $("toast");
  region.textContent = message;
  region.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => region.classList.remove("shown"), 5000);
}
