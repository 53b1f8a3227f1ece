// The JSON API, same origin, authenticated by the HttpOnly session cookie.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { body, headers = {} } = {}) {
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new ApiError(0, "network", String(err?.message ?? err));
  }
  if (resp.ok || resp.status === 304) return resp;
  let code = "http_error";
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const data = await resp.json();
    code = data.error ?? code;
    message = data.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(resp.status, code, message);
}

export async function get(path) {
  return (await request("GET", path)).json();
}

export async function post(path, body) {
  return (await request("POST", path, { body: body ?? {} })).json();
}

export async function del(path) {
  await request("DELETE", path);
}

/** GET with If-None-Match: {changed: false} on 304, else {changed: true, data, etag}. */
export async function getIfChanged(path, etag) {
  const resp = await request("GET", path, { headers: etag ? { "If-None-Match": etag } : {} });
  if (resp.status === 304) return { changed: false, etag };
  return { changed: true, data: await resp.json(), etag: resp.headers.get("ETag") };
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(key, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** Every page of a cursor-paginated listing, up to ``max`` items. */
export async function all(path, params, max = 2000) {
  const items = [];
  let cursor;
  do {
    const page = await get(path + query({ ...params, cursor }));
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
