// The console's only way to the data: Tusk's public REST API, /api/v1, as any client uses it.
// With auth on, the session cookie carries the token; each change also sends the CSRF token
// the login gave (the tusk_csrf cookie), which the server checks.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) {
      return decodeURIComponent(rest.join("="));
    }
  }
  return "";
}

export function enc(name) {
  return encodeURIComponent(name);
}

// A repo@ref/path URL: a path's slashes stay, each part is encoded.
export function filePath(path) {
  return path
    .split("/")
    .filter((p) => p)
    .map(enc)
    .join("/");
}

export async function call(path, options) {
  const opts = options || {};
  const method = opts.method || "GET";
  const headers = { accept: "application/json" };
  let body;
  if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  if (method !== "GET" && method !== "HEAD") {
    const csrf = cookie("tusk_csrf");
    if (csrf) {
      headers["x-csrf-token"] = csrf;
    }
  }
  const response = await fetch("/api/v1" + path, {
    method,
    headers,
    body,
    credentials: "same-origin",
    signal: opts.signal,
  });
  if (!response.ok) {
    let code = "http_" + response.status;
    let message = response.statusText || "request failed";
    try {
      const data = await response.json();
      code = data.error.code;
      message = data.error.message;
    } catch {
      // not a JSON error body: keep the status line
    }
    throw new ApiError(response.status, code, message);
  }
  if (opts.raw) {
    return response;
  }
  if (response.status === 204) {
    return null;
  }
  return response.json();
}

export const get = (path, signal) => call(path, { signal });
export const post = (path, body) => call(path, { method: "POST", body });
export const del = (path) => call(path, { method: "DELETE" });

// The address of a file's bytes (a download link; the cookie authorizes it).
export function fileUrl(repo, ref, path) {
  return `/api/v1/repos/${enc(repo)}/commits/${enc(ref)}/files/${filePath(path)}`;
}
