// The hall page: publish the hall program from this browser (camera or screen, plus microphone),
// or hand a broadcast encoder its WHIP URL and token; show the current speaker large.
import {$, api, requireLogin, sessionId, showError, staffLive} from "./staff.js";
import {t, toggleLanguage, translate} from "./i18n.js";

const loggedIn = requireLogin();
const session = sessionId();
const state = {floor: {holders: [], queue: []}, errors: [], publishing: false, connection: "connecting"};
window.diemcau = state;
const fail = (error) => { state.errors.push(String(error.message ?? error)); showError($("error"), error); };

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => pc.addEventListener("icegatheringstatechange", () => {
    if (pc.iceGatheringState === "complete") resolve();
  }));
}

async function negotiate(pc, kind) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const answer = await live.request({type: `media.${kind}`, sdp: pc.localDescription.sdp});
  await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
}

async function publish(source) {
  const video = source === "screen"
    ? await navigator.mediaDevices.getDisplayMedia({video: true})
    : await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}});
  const audio = await navigator.mediaDevices.getUserMedia({audio: true});
  state.tx?.close();
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle", iceServers: state.welcome.media.ice_servers});
  for (const track of [...audio.getAudioTracks(), ...video.getVideoTracks()]) {
    pc.addTransceiver(track, {direction: "sendonly"});
  }
  await negotiate(pc, "publish");
  state.tx = pc;
  state.publishing = true;
  $("publishing").hidden = false;
}

async function watch(welcome) {
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle", iceServers: welcome.media.ice_servers});
  const streams = {};
  for (const slot of welcome.media.slots) {
    const audio = pc.addTransceiver("audio", {direction: "recvonly"});
    const video = pc.addTransceiver("video", {direction: "recvonly"});
    streams[slot] = new MediaStream([audio.receiver.track, video.receiver.track]);
  }
  await negotiate(pc, "subscribe");
  $("hall-speaker").srcObject = streams.floor;
  state.rx?.close();
  state.rx = pc;
}

function render() {
  const holder = state.floor.holders.at(-1);
  $("speaker-name").textContent = holder ? t("stage.speaker", {name: holder.point_name ?? holder.point_code}) : t("moderator.nobody");
}

$("camera").addEventListener("click", () => publish("camera").catch(fail));
$("screen").addEventListener("click", () => publish("screen").catch(fail));
$("whip").addEventListener("click", async () => {
  try {
    const minted = await api("POST", `/sessions/${session}/whip-tokens`, {json: {label: "Hội trường"}});
    $("whip-url").textContent = minted.whip_url;
    $("whip-token").textContent = minted.token;
  } catch (error) {
    fail(error);
  }
});
$("lang").addEventListener("click", () => { toggleLanguage(); render(); });

const live = staffLive(session, "hall", {
  welcome(welcome) {
    state.welcome = welcome;
    $("title").textContent = welcome.session.title;
    state.floor = welcome.floor;
    render();
    watch(welcome).catch(fail);
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
translate();
if (loggedIn) live.start();
