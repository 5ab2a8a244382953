// JSON over HTTP to the matchmaker and leaderboard services, with their error bodies as typed errors.

import { redactUrl } from "./errors.js";

/** `method path` on `base`; resolves with the JSON body, rejects with `new ErrorClass(status,
 * code, message)`: the service's `{"error": {code, message}}`, or status 0 `unreachable`.
 * `token` goes as `Authorization: Bearer` (a player token). */
export async function callService(ErrorClass, base, method, path, { body, query, signal, token } = {}) {
  const url = new URL(base.replace(/\/+$/, "") + path);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
  const headers = body === undefined ? {} : { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
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
