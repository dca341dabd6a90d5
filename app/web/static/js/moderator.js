// The moderator's desk: the queue in order with topics and waiting time; grant, deny, move up,
// revoke, extend; call on any point directly; the current speaker's video and countdown.
import {$, api, clock, el, requireLogin, sessionId, showError, staffLive} from "./staff.js";
import {t, toggleLanguage, translate} from "./i18n.js";

const loggedIn = requireLogin();
const session = sessionId();
const state = {floor: {holders: [], queue: []}, offset: 0, errors: [], connection: "connecting"};
window.diemcau = state;
const fail = (error) => { state.errors.push(String(error.message ?? error)); showError($("error"), error); };

async function act(action, fields = {}) {
  try {
    const result = await live.request({type: "floor", action, ...fields});
    if (result.floor) { state.floor = result.floor; render(); }
  } catch (error) {
    fail(error);
  }
}

function render() {
  const {holders, queue} = state.floor;
  const holder = holders.at(-1) ?? null;
  state.holder = holder?.point_code ?? null;
  $("speaker").textContent = holder ? `${holder.point_name ?? holder.point_code} — ${holder.topic}` : t("moderator.nobody");
  $("revoke").disabled = !holder;
  $("extend").disabled = !holder;
  $("queue-empty").hidden = queue.length > 0;
  $("queue").replaceChildren(...queue.map((entry, index) => el("li", {dataset: {request: entry.request_id, code: entry.point_code}},
    el("strong", {textContent: `${entry.position}. ${entry.point_name ?? entry.point_code}`}),
    el("span", {className: "topic", textContent: entry.topic}),
    el("span", {className: "waited", dataset: {since: entry.requested_at}}),
    el("button", {type: "button", className: "primary grant", textContent: t("moderator.grant"),
                  onclick: () => act("grant", {request_id: entry.request_id})}),
    el("button", {type: "button", textContent: t("moderator.up"), disabled: index === 0,
                  onclick: () => moveUp(index)}),
    el("button", {type: "button", className: "danger", textContent: t("moderator.deny"),
                  onclick: () => act("deny", {request_id: entry.request_id})}))));
  tick();
}

function moveUp(index) {
  const order = state.floor.queue.map((e) => e.request_id);
  [order[index - 1], order[index]] = [order[index], order[index - 1]];
  act("reorder", {order});
}

function tick() {
  const now = Date.now() / 1000 + state.offset;
  const holder = state.floor.holders.at(-1);
  $("countdown").textContent = holder ? clock(holder.deadline - now) : "";
  for (const span of document.querySelectorAll(".waited")) {
    span.textContent = t("moderator.waited", {time: clock(now - Number(span.dataset.since))});
  }
}
setInterval(tick, 500);

$("revoke").addEventListener("click", () => act("revoke", {point_code: state.holder}));
$("extend").addEventListener("click", () => act("extend", {point_code: state.holder, seconds: 60}));
$("call-on").addEventListener("submit", (event) => {
  event.preventDefault();
  act("grant", {point_code: $("call-code").value.trim()});
  $("call-code").value = "";
});
$("lang").addEventListener("click", () => { toggleLanguage(); render(); });

async function watchSpeaker(welcome) {
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle", iceServers: welcome.media.ice_servers});
  const streams = {};
  for (const slot of welcome.media.slots) {
    const audio = pc.addTransceiver("audio", {direction: "recvonly"});
    const video = pc.addTransceiver("video", {direction: "recvonly"});
    streams[slot] = new MediaStream([audio.receiver.track, video.receiver.track]);
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
  });
  const answer = await live.request({type: "media.subscribe", sdp: pc.localDescription.sdp});
  await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
  $("speaker-video").srcObject = streams.floor;
  state.pc?.close();
  state.pc = pc;
}

const live = staffLive(session, "moderator", {
  welcome(welcome) {
    $("title").textContent = welcome.session.title;
    state.floor = welcome.floor;
    render();
    live.request({type: "ping"}).then((r) => { state.offset = r.server_time - Date.now() / 1000; }).catch(() => {});
    watchSpeaker(welcome).catch(fail);
  },
  event(message) {
    if (message.event.startsWith("floor.")) { state.floor = message.payload.floor; render(); }
  },
  state(connection) {
    state.connection = connection;
    $("connection").hidden = false;
    $("connection").textContent = t(`conn.${connection}`);
    $("connection").className = `badge ${connection}`;
  },
  stopped(code) { state.connection = "stopped"; $("connection").textContent = t(code === 4404 ? "conn.ended" : "conn.refused"); },
});
window.diemcau.live = live;
translate();
if (loggedIn) api("GET", "/auth/me").then(() => live.start()).catch(fail);
