// Follows items that are on their way (uploading … indexing) until they are ready or failed,
// and tells every part of the page that shows them.

import { api } from "./api.js";
import { PENDING } from "./words.js";

const POLL_MS = 1500;
const BATCH = 6;

const watched = new Map(); // id -> last known item
const listeners = new Set();
let timer = 0;
let polling = false; // one polling loop at most, however often watch() is called

export function onItem(listener) {
  listeners.add(listener);
}

export function announce(item) {
  for (const listener of listeners) listener(item);
}

export function watch(item) {
  if (!PENDING.has(item.status)) return;
  watched.set(item.id, item);
  if (!timer && !polling) timer = setTimeout(tick, POLL_MS);
}

export function unwatch(id) {
  watched.delete(id);
}

async function tick() {
  timer = 0;
  polling = true;
  const ids = [...watched.keys()].slice(0, BATCH);
  // The oldest first, then round-robin: move the ones asked to the back.
  for (const id of ids) {
    const item = watched.get(id);
    watched.delete(id);
    watched.set(id, item);
  }
  await Promise.all(
    ids.map(async (id) => {
      try {
        const item = await api.item(id);
        if (!watched.has(id)) return;
        if (!PENDING.has(item.status)) watched.delete(id);
        announce(item);
      } catch (error) {
        if (error.status === 404 || error.status === 401) watched.delete(id);
      }
    }),
  );
  polling = false;
  if (watched.size && !timer) timer = setTimeout(tick, POLL_MS);
}
