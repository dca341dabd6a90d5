// The hall operator's console: sessions and their lifecycle, the point directory, invitations and
// join links, the wall of every point, the roll-call panel, the readiness board and the timeline.
// The wall is built once per session and then changed tile by tile from `wall.delta`: 3,321 tiles
// are never re-rendered as a whole.
import {$, api, clock, download, el, requireLogin, sessionId, showError, staffLive} from "./staff.js";
import {t, toggleLanguage, translate} from "./i18n.js";

const loggedIn = requireLogin();
const WALL_STATES = ["online", "degraded", "offline", "invited", "connecting"];
const state = {
  session: null, live: null, links: [], tiles: new Map(), wall: new Map(), rollcall: null,
  tally: null, areas: new Map(), preview: null, errors: [], events: 0,
};
window.diemcau = state;

function fail(error) {
  state.errors.push(String(error.message ?? error));
  showError($("error"), error);
}
const guard = (fn) => (...args) => fn(...args).catch(fail);

// ---- tabs ---------------------------------------------------------------------------------

function openTab(name) {
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== `tab-${name}`;
  for (const button of document.querySelectorAll("#nav button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  if (name === "readiness") loadReadiness().catch(fail);
}
for (const button of document.querySelectorAll("#nav button")) {
  button.addEventListener("click", () => openTab(button.dataset.tab));
}

// ---- sessions -----------------------------------------------------------------------------

const ACTIONS = {draft: ["open", "cancel"], scheduled: ["open", "cancel"], open: ["go-live", "end", "cancel"],
                 live: ["end"], ended: [], cancelled: []};
const DESTRUCTIVE = new Set(["end", "cancel"]);

async function loadSessions() {
  const page = await api("GET", "/sessions?limit=100");
  $("sessions").replaceChildren(...page.items.map((s) => el("tr", {dataset: {id: s.id}},
    el("td", {textContent: s.title}),
    el("td", {textContent: s.hall_name}),
    el("td", {textContent: t(`status.${s.status}`)}),
    el("td", {}, el("button", {type: "button", textContent: t("sessions.select"),
                                onclick: guard(() => selectSession(s.id))})),
    el("td", {}, el("a", {href: `/moderator?session=${s.id}`, textContent: t("sessions.moderator")})),
    el("td", {}, el("a", {href: `/hall?session=${s.id}`, textContent: t("sessions.hallpage")})),
  )));
  return page.items;
}

function renderCurrent() {
  const s = state.session;
  $("current").textContent = s ? t("sessions.current", {title: s.title, status: t(`status.${s.status}`)})
                               : t("sessions.none");
  $("lifecycle").replaceChildren(...(s ? ACTIONS[s.status] : []).map((action) =>
    el("button", {type: "button", dataset: {action}, textContent: t(`action.${action}`),
                  className: DESTRUCTIVE.has(action) ? "danger" : "primary",
                  onclick: guard(() => lifecycle(action))})));
}

function fillEdit() {
  const s = state.session;
  $("edit-session").hidden = !s;
  if (!s) return;
  $("edit-title").value = s.title;
  $("edit-hall").value = s.hall_name;
  $("edit-start").value = s.scheduled_start ? localInput(new Date(s.scheduled_start)) : "";
  $("edit-speaking").value = s.settings.speaking_time_limit_s;
  $("edit-rollcall").value = s.settings.rollcall_deadline_s;
  $("edit-saved").textContent = "";
}

function localInput(date) {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}

$("edit-session").addEventListener("submit", guard(async (event) => {
  event.preventDefault();
  const body = {
    title: $("edit-title").value, hall_name: $("edit-hall").value,
    settings: {speaking_time_limit_s: Number($("edit-speaking").value),
               rollcall_deadline_s: Number($("edit-rollcall").value)},
  };
  if ($("edit-start").value) body.scheduled_start = new Date($("edit-start").value).toISOString();
  state.session = await api("PATCH", `/sessions/${state.session.id}`, {json: body});
  renderCurrent();
  await loadSessions();
  $("edit-saved").textContent = t("sessions.saved");
}));

async function lifecycle(action) {
  const s = state.session;
  if (DESTRUCTIVE.has(action) && !confirm(t("action.confirm", {action: t(`action.${action}`), title: s.title}))) return;
  state.session = await api("POST", `/sessions/${s.id}/actions/${action}`);
  renderCurrent();
  await loadSessions();
  if (["open", "live"].includes(state.session.status) && !state.live) connect();
}

async function selectSession(id) {
  state.session = await api("GET", `/sessions/${id}`);
  history.replaceState(null, "", `?session=${id}`);
  renderCurrent();
  fillEdit();
  state.live?.stop();
  state.live = null;
  state.links = [];
  $("links").replaceChildren();
  $("timeline").replaceChildren();
  connect();
  await loadTimeline();
}

$("new-session").addEventListener("submit", guard(async (event) => {
  event.preventDefault();
  const created = await api("POST", "/sessions", {json: {title: $("new-title").value, hall_name: $("new-hall").value}});
  $("new-title").value = "";
  await loadSessions();
  await selectSession(created.id);
}));

// ---- points -------------------------------------------------------------------------------

$("csv").addEventListener("change", guard(async () => {
  const file = $("csv").files[0];
  if (!file) return;
  $("import-progress").hidden = false;
  $("import-report").textContent = t("points.importing");
  $("import-errors").replaceChildren();
  try {
    const report = await api("POST", "/points/import", {body: file, headers: {"Content-Type": "text/csv"}});
    $("import-report").textContent = t("points.report", report);
    showRowErrors(report.errors);
  } catch (error) {
    $("import-report").textContent = t("error.generic", {message: error.message});
    showRowErrors(error.details?.errors ?? []);
  } finally {
    $("import-progress").hidden = true;
    $("csv").value = "";
  }
  await loadAreas();
  await searchPoints();
}));

function showRowErrors(errors) {
  $("import-errors").replaceChildren(...errors.map((e) =>
    el("li", {textContent: t("points.rowError", {line: e.line, message: e.field ? `${e.field}: ${e.message}` : e.message})})));
}

async function loadAreas() {
  const areas = await api("GET", "/points/areas");
  for (const select of [$("point-district"), $("invite-district")]) {
    const first = select === $("point-district") ? [el("option", {value: "", textContent: t("points.allDistricts")})] : [];
    select.replaceChildren(...first, ...areas.map((a) =>
      el("option", {value: a.code, textContent: `${a.name ?? a.code} (${a.points})`})));
  }
}

let searchTimer = null;
async function searchPoints() {
  const params = new URLSearchParams({limit: "100"});
  if ($("point-search").value) params.set("q", $("point-search").value);
  if ($("point-district").value) params.set("district_code", $("point-district").value);
  const page = await api("GET", `/points?${params}`);
  $("point-count").textContent = t("points.count", {shown: page.items.length, total: page.total});
  $("points").replaceChildren(...page.items.map((p) => el("tr", {},
    el("td", {textContent: p.code}), el("td", {textContent: p.name}),
    el("td", {textContent: p.district_name ?? ""}), el("td", {textContent: p.province_name ?? ""}))));
}
$("point-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => searchPoints().catch(fail), 250);
});
$("point-district").addEventListener("change", guard(searchPoints));

// ---- invitations and join links -----------------------------------------------------------

async function invite(body) {
  const result = await api("POST", `/sessions/${state.session.id}/invitations`, {json: body});
  $("invite-report").textContent = t("invite.done", {count: result.total_invited});
}
$("invite-all").addEventListener("click", guard(() => invite({all: true})));
$("invite-district-go").addEventListener("click", guard(() => invite({district_codes: [$("invite-district").value]})));
$("invite-codes-go").addEventListener("click", guard(() => invite({
  point_codes: $("invite-codes").value.split(/[\s,;]+/).filter(Boolean),
})));

// The credentials are shown once, in this answer: they stay in this tab until downloaded.
$("make-links").addEventListener("click", guard(async () => {
  const result = await api("POST", `/sessions/${state.session.id}/join-links`, {json: {}});
  state.links = result.links;
  $("invite-report").textContent = t("invite.issued", {issued: result.issued, skipped: result.skipped_with_credential});
  $("download-links").disabled = state.links.length === 0;
  $("links").replaceChildren(...state.links.map((link) => el("tr", {},
    el("td", {textContent: link.point_code}), el("td", {textContent: link.point_name}),
    el("td", {textContent: link.district_name ?? ""}),
    el("td", {}, el("button", {type: "button", textContent: t("invite.qr"), onclick: guard(() => showQr(link))})))));
}));

function csvCell(value) {
  const text = String(value ?? "");
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

$("download-links").addEventListener("click", () => {
  const rows = [["code", "name", "district", "province", "link"],
    ...state.links.map((l) => [l.point_code, l.point_name, l.district_name, l.province_name, l.link])];
  const text = "\ufeff" + rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
  download(`session-${state.session.id}-join-links.csv`, new Blob([text], {type: "text/csv;charset=utf-8"}));
});

async function showQr(link) {
  const response = await api("POST", "/qr", {json: {text: link.link}, raw: true});
  const svg = await response.text();
  const image = el("img", {alt: `QR ${link.point_code}`, src: `data:image/svg+xml;base64,${btoa(svg)}`});
  $("qr").replaceChildren(image);
  $("qr-link").textContent = `${link.point_name}: ${link.link}`;
}

// ---- the live connection ------------------------------------------------------------------

function connect() {
  const s = state.session;
  if (!s || !["open", "live"].includes(s.status)) return;
  const live = staffLive(s.id, "operator", {
    welcome(welcome) {
      state.rollcall = welcome.rollcall;
      renderRollcall();
      if (welcome.rollcall) loadRound(welcome.rollcall.round).catch(fail);
    },
    event: (message) => onEvent(message),
    message(message) {
      if (message.type === "wall.snapshot") buildWall(message);
      else if (message.type === "wall.delta") applyWall(message);
      else if (message.type === "rollcall.tally") applyTally(message);
    },
    state(connection) {
      $("connection").hidden = false;
      $("connection").textContent = t(`conn.${connection}`);
      $("connection").className = `badge ${connection}`;
      state.connection = connection;
    },
    stopped(code) { state.connection = "stopped"; $("connection").textContent = t(code === 4404 ? "conn.ended" : "conn.refused"); },
  });
  live.stop = () => { live.stopped = true; live.ws?.close(); };
  state.live = live;
  live.start();
}

function onEvent(message) {
  state.events += 1;
  addTimeline(message);
  const {event, payload} = message;
  if (event === "rollcall.opened") {
    // The round's first tally may have come before this event: keep its counts.
    const counts = state.rollcall?.round === payload.round ? state.rollcall.counts : null;
    state.rollcall = {round: payload.round, phase: "open", deadline: payload.deadline,
                      opened_at: payload.opened_at, message: payload.message, counts};
    renderRollcall();
  } else if (event === "rollcall.closed" && state.rollcall) {
    state.rollcall = {...state.rollcall, phase: "closed", counts: payload.counts};
    renderRollcall();
  } else if (event === "point.readiness") {
    loadReadiness().catch(fail);
  } else if (event === "session.status_changed") {
    state.session = {...state.session, status: payload.to};
    renderCurrent();
  }
}

// ---- the wall -----------------------------------------------------------------------------

function buildWall(snapshot) {
  state.wall = new Map(snapshot.points.map((p) => [p.code, p]));
  const groups = new Map();
  for (const point of snapshot.points) {
    const key = point.area_code ?? "";
    if (!groups.has(key)) groups.set(key, {name: point.area_name ?? key, points: []});
    groups.get(key).points.push(point);
  }
  state.tiles = new Map();
  const fragment = document.createDocumentFragment();
  for (const [, group] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
    const tiles = group.points.map((point) => {
      const tile = el("button", {type: "button", className: `tile ${point.state}`, title: point.name,
                                 textContent: point.name, dataset: {code: point.code}});
      state.tiles.set(point.code, tile);
      return tile;
    });
    fragment.append(el("section", {className: "area"}, el("h4", {textContent: group.name}), ...tiles));
  }
  $("wall").replaceChildren(fragment);
  renderCounts(snapshot.counts);
  filterWall();
}

function applyWall(delta) {
  for (const point of delta.points) {
    state.wall.set(point.code, point);
    const tile = state.tiles.get(point.code);
    if (tile) {
      tile.className = `tile ${point.state}`;
      tile.hidden = !matches(point);
    }
    if (state.selected === point.code) showDetail(point.code);
  }
  renderCounts(delta.counts);
}

function renderCounts(counts) {
  state.counts = counts;
  $("wall-counts").replaceChildren(...WALL_STATES.map((s) =>
    el("span", {className: `count ${s}`, dataset: {state: s}, textContent: `${t(`wall.${s}`)}: ${counts[s] ?? 0}`})));
}

function matches(point) {
  const wanted = $("wall-state").value, text = $("wall-search").value.trim().toLowerCase();
  return (!wanted || point.state === wanted) &&
    (!text || point.code.startsWith(text) || point.name.toLowerCase().includes(text));
}

function filterWall() {
  for (const [code, tile] of state.tiles) tile.hidden = !matches(state.wall.get(code));
}

$("wall-state").replaceChildren(el("option", {value: "", textContent: t("wall.all")}),
  ...WALL_STATES.map((s) => el("option", {value: s, textContent: t(`wall.${s}`)})));
$("wall-state").addEventListener("change", filterWall);
$("wall-search").addEventListener("input", filterWall);
$("wall").addEventListener("click", (event) => {
  const tile = event.target.closest(".tile");
  if (tile) showDetail(tile.dataset.code);
});

function showDetail(code) {
  const point = state.wall.get(code);
  state.selected = code;
  $("tile-detail").hidden = false;
  $("detail-name").textContent = `${point.name} (${point.code})`;
  const rows = [
    [t("wall.state"), t(`wall.${point.state}`)],
    [t("wall.since"), new Date(point.since * 1000).toLocaleTimeString()],
    [t("wall.rtt"), point.rtt_ms === null ? "—" : `${point.rtt_ms} ms`],
    [t("wall.loss"), point.loss_pct === null ? "—" : `${point.loss_pct} %`],
    [t("wall.client"), point.client ?? "—"],
  ];
  $("detail-fields").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {textContent: k}), el("dd", {textContent: v})]));
  loadStays(code).catch(fail);
}

async function loadStays(code) {
  const presence = await api("GET", `/sessions/${state.session.id}/presence/${encodeURIComponent(code)}`);
  if (state.selected !== code) return;
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "…");
  $("detail-stays").replaceChildren(...presence.stays.map((stay) =>
    el("li", {textContent: `${time(stay.connected_at)} – ${time(stay.disconnected_at)}`})));
}

$("preview-go").addEventListener("click", guard(async () => {
  if (!state.preview) {
    const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
    const streams = [];
    for (let i = 0; i < 3; i += 1) {  // program, floor, preview
      const audio = pc.addTransceiver("audio", {direction: "recvonly"});
      const video = pc.addTransceiver("video", {direction: "recvonly"});
      streams.push(new MediaStream([audio.receiver.track, video.receiver.track]));
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") resolve();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    });
    const answer = await state.live.request({type: "media.subscribe", sdp: pc.localDescription.sdp});
    await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
    $("preview-video").srcObject = streams[2];
    state.preview = pc;
  }
  await state.live.request({type: "media.preview", point_code: state.selected});
  $("preview-video").hidden = false;
}));

// ---- roll-call ----------------------------------------------------------------------------

$("rollcall-open").addEventListener("submit", guard(async (event) => {
  event.preventDefault();
  await state.live.request({type: "rollcall", action: "open", deadline_s: Number($("rollcall-deadline-s").value)});
}));
$("rollcall-close").addEventListener("click", guard(async () => {
  await state.live.request({type: "rollcall", action: "close", round: state.rollcall.round});
}));
$("rollcall-excuse").addEventListener("submit", guard(async (event) => {
  event.preventDefault();
  await state.live.request({type: "rollcall", action: "excuse", round: state.rollcall.round,
                            point_code: $("excuse-code").value.trim(), reason: $("excuse-reason").value});
  $("excuse-code").value = "";
  $("excuse-reason").value = "";
}));
for (const [id, kind] of [["rollcall-csv", "csv"], ["rollcall-xlsx", "xlsx"]]) {
  $(id).addEventListener("click", guard(async () => {
    const response = await api("GET", `/sessions/${state.session.id}/attendance.${kind}?lang=${document.documentElement.lang}`, {raw: true});
    download(`diem-danh-phien-${state.session.id}.${kind}`, await response.blob());
  }));
}

function applyTally(tally) {
  if (state.areasRound !== tally.round) {
    state.areas = new Map();
    state.areasRound = tally.round;
  }
  if (!state.rollcall || tally.round > state.rollcall.round) {
    state.rollcall = {round: tally.round, phase: "open", deadline: Date.now() / 1000, message: ""};
  }
  if (tally.round === state.rollcall.round) state.rollcall = {...state.rollcall, counts: tally.counts};
  for (const area of tally.areas) state.areas.set(area.code, area);
  renderRollcall();
}

// A console opened during a round starts from the whole round, then follows the deltas.
async function loadRound(number) {
  const detail = await api("GET", `/sessions/${state.session.id}/rollcalls/${number}`);
  state.areas = new Map(detail.areas.map((a) => [a.code, a]));
  state.areasRound = number;
  state.rollcall = {...detail.round};
  renderRollcall();
}

function renderRollcall() {
  const round = state.rollcall;
  if (!round) {
    $("rollcall-title").textContent = t("rollcall.none");
    return;
  }
  $("rollcall-title").textContent = `${t("rollcall.round", {n: round.round})} — ${t(`phase.${round.phase}`)}`;
  const counts = round.counts;
  if (counts) {
    $("rollcall-counts").replaceChildren(...["present", "late", "excused", "absent", "waiting"].map((s) =>
      el("span", {className: `count ${s}`, dataset: {status: s}, textContent: `${t(`status.${s}`)}: ${counts[s]}`})),
      el("strong", {dataset: {status: "headcount"}, textContent: `${t("rollcall.headcount")}: ${counts.headcount}`}));
  }
  $("rollcall-areas").replaceChildren(...[...state.areas.values()].sort((a, b) => a.code.localeCompare(b.code)).map((a) =>
    el("tr", {dataset: {area: a.code}}, ...[a.name ?? a.code, a.counts.expected, a.counts.present, a.counts.late,
      a.counts.excused, a.counts.absent, a.counts.headcount].map((v) => el("td", {textContent: String(v)})))));
}

setInterval(() => {
  const round = state.rollcall;
  if (round && round.phase === "open") {
    const left = round.deadline - Date.now() / 1000;
    $("rollcall-countdown").textContent = left > 0 ? t("rollcall.countdown", {time: clock(left)}) : t("rollcall.overdue");
  } else {
    $("rollcall-countdown").textContent = "";
  }
}, 500);

// ---- readiness and timeline ---------------------------------------------------------------

async function loadReadiness() {
  if (!state.session) return;
  const board = await api("GET", `/sessions/${state.session.id}/readiness`);
  $("readiness-summary").textContent = t("readiness.summary", board);
  $("readiness-missing").textContent = t("readiness.notChecked", {count: board.not_checked.length, invited: board.invited});
  $("readiness-missing-codes").textContent = board.not_checked.join(", ");
  $("readiness").replaceChildren(...board.points.map((p) => el("tr", {className: p.ready ? "ready" : "not-ready"},
    el("td", {textContent: p.point_code}),
    el("td", {textContent: p.ready ? t("readiness.ready") : t("readiness.notReady")}),
    el("td", {textContent: `${p.camera ? "📷" : "✗"} ${p.microphone ? "🎤" : "✗"}`}),
    el("td", {textContent: p.rtt_ms === null ? "—" : `${Math.round(p.rtt_ms)} ms`}),
    el("td", {textContent: new Date(p.at).toLocaleTimeString()}))));
}

function addTimeline(message) {
  const item = el("li", {textContent: `${new Date(message.at).toLocaleTimeString()} · ${message.event} · ${message.actor}`});
  $("timeline").prepend(item);
  while ($("timeline").children.length > 500) $("timeline").lastChild.remove();
}

async function loadTimeline() {
  const page = await api("GET", `/sessions/${state.session.id}/events?after_seq=0&limit=1`);
  const start = Math.max(0, page.last_seq - 100);
  const recent = await api("GET", `/sessions/${state.session.id}/events?after_seq=${start}&limit=100`);
  for (const event of recent.items) addTimeline({...event, at: event.created_at ?? event.at, event: event.type});
}

// ---- start --------------------------------------------------------------------------------

$("lang").addEventListener("click", () => { toggleLanguage(); renderCurrent(); renderRollcall(); });
$("logout").addEventListener("click", () => { sessionStorage.removeItem("diemcau.token"); location.href = "/login"; });
translate();
openTab("sessions");
if (loggedIn) (async () => {
  const sessions = await loadSessions();
  await loadAreas();
  await searchPoints();
  const wanted = sessionId() ?? sessions[0]?.id;
  if (wanted) await selectSession(wanted);
  else renderCurrent();
  state.ready = true;
})().catch(fail);
