// Uploads: files from the picker, a drop or the clipboard, several at a time. Each goes
// POST /items (a presigned POST) -> straight to storage with progress -> followed until ready
// or failed, with the reason in words.

import { api, sendToStorage } from "./api.js";
import { $, h } from "./dom.js";
import { announce, onItem, watch } from "./watch.js";
import {
  duplicateOf,
  failureText,
  isDuplicate,
  PENDING,
  STATUS,
  uploadErrorText,
} from "./words.js";

const PARALLEL = 3;
// Files up to this size are hashed first, so a file already in the collection is recognised
// before any byte is sent (larger ones are refused by the API's size limit anyway).
const HASH_MAX_BYTES = 64 * 1024 * 1024;
const TYPES = {
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  gif: "image/gif",
  heic: "image/heic",
  heif: "image/heif",
};
const ACCEPTED = new Set(Object.values(TYPES));

const queue = [];
const byItem = new Map(); // item id -> upload
let running = 0;

function contentType(file) {
  if (ACCEPTED.has(file.type)) return file.type;
  const extension = file.name.split(".").pop()?.toLowerCase() ?? "";
  return TYPES[extension] ?? null;
}

function named(file) {
  if (file.name && file.name !== "image.png") return file;
  // Pasted screenshots arrive as "image.png": give them a name worth keeping.
  const stamp = new Date().toISOString().slice(0, 19).replace("T", " ").replace(/:/g, ".");
  const extension = (file.type.split("/")[1] ?? "png").replace("jpeg", "jpg");
  return new File([file], `Pasted image ${stamp}.${extension}`, { type: file.type });
}

export function add(files) {
  const list = [...files].filter((file) => file && file.size !== undefined);
  if (!list.length) return;
  $("uploads").hidden = false;
  for (const original of list) {
    const file = named(original);
    const upload = { file, type: contentType(file), progress: 0, state: "queued", item: null };
    upload.row = row(upload);
    $("upload-list").prepend(upload.row.element);
    if (upload.type) {
      queue.push(upload);
    } else {
      fail(upload, "This kind of file cannot be uploaded. Use JPEG, PNG, WebP, GIF or HEIC.");
    }
  }
  pump();
}

function row(upload) {
  const status = h("span", { class: "upload-status" }, "Waiting…");
  const bar = h("progress", { max: "100", value: "0", "aria-label": `Upload of ${upload.file.name}` });
  const link = h("span", { class: "upload-name" }, upload.file.name);
  const element = h("li", { class: "upload" }, link, bar, status);
  return { element, status, bar, link };
}

function show(upload, state, text) {
  upload.state = state;
  upload.row.element.dataset.state = state;
  upload.row.status.textContent = text;
}

function fail(upload, text) {
  show(upload, "failed", text);
  upload.row.bar.hidden = true;
}

function pump() {
  while (running < PARALLEL) {
    const next = queue.find((u) => u.state === "queued");
    if (!next) return;
    running += 1;
    send(next).finally(() => {
      running -= 1;
      pump();
    });
  }
}

/** The file's SHA-256 (hex), or undefined where the browser cannot hash (plain http off this
 * machine) or the file is too large to read at once: the pipeline still finds duplicates. */
async function sha256Of(file) {
  if (!globalThis.crypto?.subtle || file.size > HASH_MAX_BYTES) return undefined;
  try {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  } catch {
    return undefined;
  }
}

async function send(upload) {
  show(upload, "sending", "Checking…");
  try {
    const sha256 = await sha256Of(upload.file);
    show(upload, "sending", "Uploading… 0%");
    const created = await api.createUpload(upload.file, upload.type, sha256);
    upload.item = created.item;
    byItem.set(created.item.id, upload);
    linkTo(upload);
    announce(created.item);
    await sendToStorage(created.upload, upload.file, (fraction) => {
      upload.row.bar.value = Math.round(fraction * 100);
      show(upload, "sending", `Uploading… ${Math.round(fraction * 100)}%`);
    });
    upload.row.bar.value = 100;
    show(upload, "processing", "Uploaded; processing…");
    watch({ ...created.item, status: "uploading" });
  } catch (error) {
    if (error.code === "duplicate_item") duplicate(upload, error.itemId);
    else fail(upload, uploadErrorText(error));
  }
}

function duplicate(upload, itemId) {
  show(upload, "duplicate", "Already in your collection. ");
  upload.row.bar.hidden = true;
  if (itemId) {
    upload.row.status.append(
      h("a", { href: `/?item=${itemId}`, "data-nav": true }, "See the one you have"),
    );
  }
}

function linkTo(upload) {
  const link = h("a", { href: `/?item=${upload.item.id}`, "data-nav": true, class: "upload-name" },
    upload.file.name);
  upload.row.link.replaceWith(link);
  upload.row.link = link;
}

onItem((item) => {
  const upload = byItem.get(item.id);
  if (!upload || upload.state === "failed" || upload.state === "sending") return;
  if (isDuplicate(item)) {
    duplicate(upload, duplicateOf(item));
  } else if (item.status === "ready") {
    upload.row.bar.hidden = true;
    show(upload, "ready", "Ready — you can search for it now.");
  } else if (item.status === "failed") {
    fail(upload, failureText(item.failure));
  } else if (PENDING.has(item.status)) {
    show(upload, "processing", `${STATUS[item.status]}…`);
  }
});

export function clearFinished() {
  for (const element of [...$("upload-list").children]) {
    if (["ready", "failed", "duplicate"].includes(element.dataset.state)) element.remove();
  }
  if (!$("upload-list").children.length) $("uploads").hidden = true;
}

/** Drop anywhere, paste anywhere, or pick. */
export function install(signedIn) {
  $("file-input").addEventListener("change", (event) => {
    add(event.target.files);
    event.target.value = "";
  });
  const pick = () => $("file-input").click();
  $("upload-button").addEventListener("click", pick);
  $("choose-files").addEventListener("click", pick);
  $("uploads-clear").addEventListener("click", clearFinished);

  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!signedIn() || !hasFiles(event)) return;
    depth += 1;
    $("drop-overlay").hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) $("drop-overlay").hidden = true;
  });
  document.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    $("drop-overlay").hidden = true;
    if (signedIn()) add(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    if (!signedIn()) return;
    const files = [...(event.clipboardData?.files ?? [])];
    if (!files.length) return; // text pasted into the search box stays text
    event.preventDefault();
    add(files);
  });
}
