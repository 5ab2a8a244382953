// JSON over HTTP to the matchmaker and leaderboard services, with their error bodies as typed errors.

import { redactUrl } from "./errors.js";

const RETRIES = 2; // more attempts of a write under its Idempotency-Key, after a 503 or no answer

/** `method path` on `base`; resolves with the JSON body, rejects with `new ErrorClass(status,
 * code, message)`: the service's `{"error": {code, message}}`, or status 0 `unreachable`.
 * `token` goes as `Authorization: Bearer` (a player token), `idempotencyKey` as
 * `Idempotency-Key`. */
export async function callService(ErrorClass, base, method, path, { body, query, signal, token, idempotencyKey } = {}) {
  const url = new URL(base.replace(/\/+$/, "") + path);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
  const headers = body === undefined ? {} : { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
  let res;
  try {
    res = await fetch(url, {
      method, signal, headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e?.name === "AbortError") throw e;
    throw new ErrorClass(0, "unreachable", `cannot reach ${url.origin}: ${e?.cause?.message ?? e?.message ?? e}`,
      { url: redactUrl(url.href) });
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (res.status >= 400) {
    const err = json?.error;
    if (err && typeof err.code === "string") {
      throw new ErrorClass(res.status, err.code, `${res.status} ${err.code}: ${err.message}`, { url: redactUrl(url.href) });
    }
    throw new ErrorClass(res.status, "http_error", `${res.status}: ${text.slice(0, 200)}`, { url: redactUrl(url.href) });
  }
  if (json === null) throw new ErrorClass(res.status, "bad_response", `${redactUrl(url.href)} did not answer JSON`, { url: redactUrl(url.href) });
  return json;
}

/** `callService` for a write: sent with a new Idempotency-Key and retried under it (after 0.2 s,
 * then 0.4 s) when the service answers 503 or cannot be reached, so the service applies it once
 * however many attempts arrive. */
export async function writeOnce(ErrorClass, base, method, path, opts = {}) {
  const idempotencyKey = newKey();
  const { signal } = opts;
  for (let attempt = 0; ; attempt++) {
    try {
      return await callService(ErrorClass, base, method, path, { ...opts, idempotencyKey });
    } catch (e) {
      signal?.throwIfAborted(); // an abort (whatever its reason) is not a failure to retry
      if (attempt >= RETRIES || !(e instanceof ErrorClass) || (e.status !== 503 && e.status !== 0)) throw e;
    }
    await new Promise((resolve) => {
      const timer = setTimeout(done, 200 * 2 ** attempt);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
    signal?.throwIfAborted();
  }
}

/** 128 random bits as hex (crypto.getRandomValues: also on pages served over plain http). */
function newKey() {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
