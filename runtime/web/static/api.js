// The HTTP API as the page sees it. The ID token lives in this module's memory only (never in
// localStorage or sessionStorage); the refresh token is an HttpOnly cookie the API set, which
// no script can read. A reload asks /auth/refresh for a new ID token; a token that is about to
// expire is renewed in the background; when renewal fails the page is told it is signed out.

const SAME_ORIGIN = { "x-collections-request": "1" };
const RENEW_BEFORE_S = 120;

let session = null; // { token, username, expiresAt }
let renewTimer = 0;
let renewing = null;
const signedOutListeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, details = [], itemId = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.itemId = itemId; // the item already holding the same image (409 duplicate_item)
    this.retryAfter = retryAfter; // seconds (the Retry-After header of a 429 or 503)
  }
}

const UNREACHABLE = new ApiError(
  0,
  "unreachable",
  "Collections does not answer. Check your connection (locally: is `collections dev` running?).",
);

async function toError(response) {
  let body = null;
  try {
    body = (await response.json()).error;
  } catch {
    // not our JSON error shape (a proxy's page, say)
  }
  return new ApiError(
    response.status,
    body?.code ?? `http_${response.status}`,
    body?.message ?? `The service answered ${response.status}.`,
    body?.details ?? [],
    body?.item_id ?? null,
    Number.parseInt(response.headers.get("retry-after") ?? "", 10) || null,
  );
}

async function sessionCall(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: body ? { ...SAME_ORIGIN, "content-type": "application/json" } : SAME_ORIGIN,
      body: body ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw UNREACHABLE;
  }
  if (!response.ok) throw await toError(response);
  return response.status === 204 ? null : response.json();
}

function keep(data) {
  session = {
    token: data.id_token,
    username: data.username,
    expiresAt: Date.now() + data.expires_in * 1000,
  };
  clearTimeout(renewTimer);
  const wait = Math.max(5, data.expires_in - RENEW_BEFORE_S) * 1000;
  renewTimer = setTimeout(() => renew().catch(() => expire()), wait);
  return session;
}

function expire() {
  clearTimeout(renewTimer);
  if (!session) return;
  session = null;
  for (const listener of signedOutListeners) listener();
}

function renew() {
  if (!renewing) {
    renewing = sessionCall("/auth/refresh")
      .then(keep)
      .finally(() => {
        renewing = null;
      });
  }
  return renewing;
}

export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

export function currentUser() {
  return session?.username ?? null;
}

export async function signIn(username, password) {
  return keep(await sessionCall("/auth/login", { username, password }));
}

/** The session the cookie still holds (after a reload), or null. */
export async function resume() {
  try {
    return keep(await sessionCall("/auth/refresh"));
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export async function signOut() {
  clearTimeout(renewTimer);
  session = null;
  try {
    await sessionCall("/auth/logout");
  } catch {
    // the cookie is cleared by the next successful call anyway; the page forgets the token now
  }
}

/** A JSON request with the bearer token; one renewal and retry on a 401. */
export async function request(method, path, { params, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const send = async () => {
    if (!session) throw new ApiError(401, "signed_out", "You are signed out.");
    try {
      return await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${session.token}`,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
      });
    } catch {
      throw UNREACHABLE;
    }
  };
  let response = await send();
  if (response.status === 401) {
    try {
      await renew();
    } catch {
      expire();
      throw new ApiError(401, "session_expired", "Your session has ended; sign in again.");
    }
    response = await send();
    if (response.status === 401) {
      expire();
      throw await toError(response);
    }
  }
  if (!response.ok) throw await toError(response);
  return response.status === 204 ? null : response.json();
}

export const api = {
  items: (params) => request("GET", "/items", { params }),
  item: (id) => request("GET", `/items/${encodeURIComponent(id)}`),
  analyses: (id) => request("GET", `/items/${encodeURIComponent(id)}/analyses`),
  reanalyze: (id) => request("POST", `/items/${encodeURIComponent(id)}/reanalyze`),
  remove: (id) => request("DELETE", `/items/${encodeURIComponent(id)}`),
  search: (params) => request("GET", "/search", { params }),
  conversation: (id) => request("GET", `/conversations/${encodeURIComponent(id)}`),
  startConversation: (title) => request("POST", "/conversations", { body: { title } }),
  ask: (id, content) =>
    request("POST", `/conversations/${encodeURIComponent(id)}/messages`, { body: { content } }),
  message: (id, messageId) =>
    request(
      "GET",
      `/conversations/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`,
    ),
  createUpload: (file, contentType, sha256) =>
    request("POST", "/items", {
      body: { file_name: file.name, content_type: contentType, size: file.size, sha256 },
    }),
};

/** The presigned POST straight to storage, with progress (0..1) as it goes. */
export function sendToStorage(form, file, onProgress) {
  return new Promise((resolve, reject) => {
    const data = new FormData();
    for (const [name, value] of Object.entries(form.fields)) data.append(name, value);
    data.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.url);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else reject(new ApiError(xhr.status, "storage_refused", storageRefusal(xhr)));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "upload_interrupted", "The upload was interrupted; try again.")),
    );
    xhr.send(data);
  });
}

function storageRefusal(xhr) {
  const code = /<Code>([^<]+)<\/Code>/.exec(xhr.responseText ?? "")?.[1];
  if (code === "EntityTooLarge") return "The file is larger than the upload limit.";
  if (code === "AccessDenied") return "Storage refused the upload (its permission expired); try again.";
  return `Storage refused the upload (${code ?? xhr.status}).`;
}
