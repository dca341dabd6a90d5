// What every staff page shares: the access token (kept for this browser tab only), the API with
// typed errors, the staff WebSocket, and small DOM helpers.
import {Live} from "./live.js";
import {t} from "./i18n.js";

export const $ = (id) => document.getElementById(id);

export function token() {
  return sessionStorage.getItem("diemcau.token");
}

// False (and off to the login page, to come back here) when this tab has no token.
export function requireLogin() {
  if (token()) return true;
  location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  return false;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? "error";
    this.details = body?.details ?? {};
  }
}

export async function api(method, path, {json, body, headers = {}, raw = false} = {}) {
  const init = {method, headers: {...headers}};
  if (token()) init.headers.Authorization = `Bearer ${token()}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(`/api/v1${path}`, init);
  if (response.status === 401 && path !== "/auth/login") {
    sessionStorage.removeItem("diemcau.token");
    requireLogin();
  }
  if (!response.ok) {
    let detail = null;
    try { detail = await response.json(); } catch { detail = null; }
    throw new ApiError(response.status, detail);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export function sessionId() {
  return Number(new URLSearchParams(location.search).get("session")) || null;
}

// The staff connection to one session, in a role (operator, moderator, hall, observer).
export function staffLive(session, role, handlers) {
  return new Live(
    () => ({type: "hello", id: "hello", protocol: 1,
            auth: {kind: "staff", token: token(), session_id: session, role}}),
    handlers,
  );
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function showError(target, error) {
  target.textContent = t("error.generic", {message: error.message ?? String(error)});
  target.hidden = false;
}

export function download(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = el("a", {href: url, download: filename});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
