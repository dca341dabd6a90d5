// The ward staff's page: device check, then the hall full-window, the speaker, raise hand, the
// floor with its countdown (microphone live only then), the roll-call prompt, and a connection
// that comes back as itself. `window.diemcau` exposes the state for tests and support staff.
import {Live} from "./live.js";
import {t, toggleLanguage, translate} from "./i18n.js";

const $ = (id) => document.getElementById(id);
const credential = decodeURIComponent(location.hash.slice(1));
const state = {
  identity: null, welcome: null, floor: {holders: [], queue: []}, rollcall: null,
  answer: null, stream: null, rx: null, tx: null, mine: false, errors: [], resumed: 0,
  joinedAt: null, connection: "connecting", clockOffset: 0,
};
window.diemcau = state;

function show(id, visible) { $(id).hidden = !visible; }
function fail(where, error) {
  const text = error?.message ?? error?.code ?? String(error);
  state.errors.push(`${where}: ${text}`);
  $(where).textContent = t("error.generic", {message: text});
  show(where, true);
}

// ---- device check -------------------------------------------------------------------------

async function openDevices() {
  const camera = $("camera").value, mic = $("mic").value;
  state.stream?.getTracks().forEach((track) => track.stop());
  state.stream = await navigator.mediaDevices.getUserMedia({
    video: camera ? {deviceId: {exact: camera}} : {width: 640, height: 360},
    audio: mic ? {deviceId: {exact: mic}} : true,
  });
  $("preview").srcObject = state.stream;
  meter(state.stream);
}

let audioContext = null;
function meter(stream) {
  audioContext ??= new AudioContext();
  const analyser = audioContext.createAnalyser();
  audioContext.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s));
    $("level").value = peak;
    if (state.stream === stream) requestAnimationFrame(tick);
  };
  tick();
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [select, kind] of [[$("camera"), "videoinput"], [$("mic"), "audioinput"]]) {
    const chosen = select.value;
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => {
      const option = new Option(d.label || `${kind} ${i + 1}`, d.deviceId);
      option.selected = d.deviceId === chosen;
      return option;
    }));
  }
}

async function checkNetwork() {
  $("network").textContent = t("check.network.testing");
  const started = performance.now();
  const response = await fetch("/api/v1/join/verify", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({credential}),
  });
  const rtt = Math.round(performance.now() - started);
  if (!response.ok) {
    $("network").textContent = t("conn.refused");
    return null;
  }
  state.identity = await response.json();
  state.networkRtt = rtt;
  $("network").textContent = t("check.network.ok", {rtt});
  return state.identity;
}

// The check goes to the hall's readiness board before the point joins.
async function reportReadiness() {
  const video = state.stream?.getVideoTracks()[0], audio = state.stream?.getAudioTracks()[0];
  const response = await fetch("/api/v1/join/readiness", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      credential, camera: Boolean(video), microphone: Boolean(audio), rtt_ms: state.networkRtt,
      camera_label: (video?.label ?? "").slice(0, 200), microphone_label: (audio?.label ?? "").slice(0, 200),
    }),
  });
  state.readinessReported = response.ok;
}

async function deviceCheck() {
  translate();
  try {
    const identity = await checkNetwork();
    if (identity === null) return;
    $("who").textContent = `${identity.point_name} (${identity.point_code})`;
    $("session").textContent = `${identity.session_title} — ${identity.hall_name}`;
    await openDevices();
    await listDevices();
    state.checked = true;
    $("join").disabled = false;
    reportReadiness();
  } catch (error) {
    $("check-error").textContent = t("check.denied", {error: error.message ?? error});
    show("check-error", true);
    state.errors.push(String(error));
  }
}

// ---- media --------------------------------------------------------------------------------

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => pc.addEventListener("icegatheringstatechange", () => {
    if (pc.iceGatheringState === "complete") resolve();
  }));
}

async function negotiate(pc, kind) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc); // the server does not trickle: every candidate goes in the offer
  const result = await live.request({type: `media.${kind}`, sdp: pc.localDescription.sdp});
  await pc.setRemoteDescription({type: "answer", sdp: result.sdp});
}

async function startMedia(welcome) {
  state.rx?.close();
  state.tx?.close();
  const config = {bundlePolicy: "max-bundle", iceServers: welcome.media.ice_servers};
  const rx = new RTCPeerConnection(config);
  state.rx = rx;
  const streams = {};
  for (const slot of welcome.media.slots) {
    const audio = rx.addTransceiver("audio", {direction: "recvonly"});
    const video = rx.addTransceiver("video", {direction: "recvonly"});
    streams[slot] = new MediaStream([audio.receiver.track, video.receiver.track]);
  }
  $("program").srcObject = streams.program;
  $("speaker").srcObject = streams.floor;
  await negotiate(rx, "subscribe");
  if (welcome.media.can_publish && state.stream) {
    const tx = new RTCPeerConnection(config);
    state.tx = tx;
    for (const track of state.stream.getTracks()) tx.addTransceiver(track, {direction: "sendonly"});
    await negotiate(tx, "publish");
  }
  updateMic();
}

// The microphone is live only while this point holds the floor.
function updateMic() {
  for (const track of state.stream?.getAudioTracks() ?? []) track.enabled = state.mine;
}

// ---- floor --------------------------------------------------------------------------------

function myCode() { return state.welcome?.identity.point_code; }

function renderFloor() {
  const floor = state.floor;
  const holder = floor.holders.at(-1) ?? null;
  state.mine = holder !== null && holder.point_code === myCode();
  show("floor-mine", state.mine);
  show("speaker-box", holder !== null && !state.mine);
  $("speaker-name").textContent = holder ? t("stage.speaker", {name: holder.point_name ?? holder.point_code}) : "";
  const waiting = floor.queue.find((entry) => entry.point_code === myCode());
  state.position = waiting ? waiting.position : null;
  $("queue-place").textContent = waiting ? t("hand.waiting", {position: waiting.position}) : "";
  show("hand", !state.mine);
  show("raise", !waiting);
  show("topic", !waiting);
  show("cancel", Boolean(waiting));
  updateMic();
}

setInterval(() => {
  const holder = state.floor.holders.at(-1);
  if (state.mine && holder) {
    const seconds = Math.max(0, Math.round(holder.deadline - (Date.now() / 1000 + state.clockOffset)));
    state.secondsLeft = seconds;
    $("floor-left").textContent = t("floor.left", {seconds});
  }
}, 500);

async function floorAction(action, fields = {}) {
  try {
    const result = await live.request({type: "floor", action, ...fields});
    if (result.floor) { state.floor = result.floor; renderFloor(); }
  } catch (error) {
    fail("room-error", error);
  }
}

// ---- roll-call ----------------------------------------------------------------------------

function renderRollcall() {
  const round = state.rollcall;
  const open = round !== null && round.phase === "open";
  const mine = round?.mine ?? null;
  const answered = mine !== null && mine.status !== "waiting";
  show("rollcall", open && !answered);
  show("rollcall-done", answered);
  if (round) {
    $("rollcall-message").textContent = round.message;
    $("rollcall-deadline").textContent = t("rollcall.deadline", {
      time: new Date(round.deadline * 1000).toLocaleTimeString(),
    });
  }
  if (answered) {
    $("rollcall-done").textContent = t("rollcall.done", {
      headcount: mine.headcount ?? "—", status: t(`status.${mine.status}`),
    });
  }
}

// One key per answer, kept until it is acknowledged: a retry after a drop is the same answer.
async function sendAnswer() {
  const answer = state.answer;
  if (!answer || !live.online) return;
  try {
    const result = await live.request({type: "rollcall", action: "confirm", ...answer});
    state.answer = null;
    state.rollcall = {...state.rollcall, mine: {...result, point_code: myCode()}};
    renderRollcall();
  } catch (error) {
    if (error.code === "disconnected" || error.code === "unavailable") return; // retried on welcome
    state.answer = null;
    fail("room-error", error);
  }
}

$("rollcall").addEventListener("submit", (event) => {
  event.preventDefault();
  state.answer = {
    round: state.rollcall.round,
    headcount: Number($("headcount").value),
    note: $("rollcall-note").value,
    key: crypto.randomUUID().replaceAll("-", ""),
  };
  sendAnswer();
});

// ---- the connection -----------------------------------------------------------------------

const live = new Live(
  () => ({
    type: "hello", id: "hello", protocol: 1, auth: {kind: "point", credential},
    client: {name: "diemcau-web", version: "1", user_agent: navigator.userAgent.slice(0, 300)},
  }),
  {
    welcome(welcome) {
      state.welcome = welcome;
      if (welcome.resumed) state.resumed += 1;
      state.floor = welcome.floor;
      state.rollcall = welcome.rollcall;
      renderFloor();
      renderRollcall();
      live.request({type: "ping"}).then((r) => {
        state.clockOffset = r.server_time - Date.now() / 1000;
      }).catch(() => {});
      startMedia(welcome).catch((error) => fail("room-error", error));
      sendAnswer();
    },
    event(message) {
      const {event, payload} = message;
      if (event.startsWith("floor.")) { state.floor = payload.floor; renderFloor(); }
      else if (event === "rollcall.opened") {
        state.rollcall = {round: payload.round, phase: "open", deadline: payload.deadline,
                          message: payload.message, mine: null};
        renderRollcall();
      } else if (event === "rollcall.closed" && state.rollcall?.round === payload.round) {
        state.rollcall = {...state.rollcall, phase: "closed"};
        renderRollcall();
      }
    },
    state(connection) {
      state.connection = connection;
      show("connection", true);
      $("connection").textContent = t(`conn.${connection}`);
      $("connection").className = `badge ${connection}`;
    },
    stopped(code) {
      state.connection = "stopped";
      $("connection").textContent = t(code === 4404 ? "conn.ended" : "conn.refused");
      $("connection").className = "badge stopped";
    },
  },
);
window.diemcau.live = live;

$("join").addEventListener("click", () => {
  show("check", false);
  show("room", true);
  state.joinedAt = Date.now();
  live.start();
});
$("raise").addEventListener("click", async () => {
  await floorAction("request", {topic: $("topic").value});
  $("topic").value = "";
});
$("cancel").addEventListener("click", () => floorAction("cancel"));
$("release").addEventListener("click", () => floorAction("release"));
$("lang").addEventListener("click", () => { toggleLanguage(); renderFloor(); renderRollcall(); });
$("camera").addEventListener("change", () => openDevices().catch((e) => fail("check-error", e)));
$("mic").addEventListener("change", () => openDevices().catch((e) => fail("check-error", e)));

deviceCheck();
