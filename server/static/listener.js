// The Onmic listener page: joins a room as audience over the WebSocket protocol
// (docs/protocol.md), listens over WebRTC (POST /rtc/offer, docs/sfu.md), shows the seats with
// speaking ripples, chat and gifts, and lets a listener apply for a seat and speak.
//
// Every text that comes from users (uids, chat, titles, gift names) goes into the page through
// textContent, never as HTML.

const $ = (id) => document.getElementById(id);

// ---- where and who -----------------------------------------------------------------------
const params = new URLSearchParams(location.search);
const room = decodeURIComponent(location.pathname.replace(/^\/listen\//, ""));
const tokenKey = `onmic-token:${room}`;
let token = params.get("token") || sessionStorage.getItem(tokenKey) || "";
const testHooks = params.has("test");
if (params.has("token")) {
  // Keep the token for reloads of this tab, but out of the address bar and history.
  sessionStorage.setItem(tokenKey, token);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
}

// ---- state ---------------------------------------------------------------------------------
let ws = null;
let nextId = 1;
const pending = new Map(); // request id -> {resolve, reject}
let me = null; // our uid
let snapshot = null; // the room state (RoomState JSON; members: owner, admins, seated, me)
let memberCount = null; // members in the room (`member_count`)
let gifts = {}; // gift id -> {name, value}
let heartbeat = null;
let joinId = null; // the id of the pending join request
let reconnectDelay = 500;
let fatal = false; // no reconnect after this (bad token, kicked, room gone)
const volumes = new Map(); // uid -> {volume, speaking, at}
let volumeTimer = null;

// media
let pc = null;
let mic = null; // the sendonly transceiver of our microphone
let micStream = null;
let slots = []; // [{audio, stream, analysers}]
let audioCtx = null;
let mediaStarting = null;
let left = false; // the listener left the room (the Leave button); Rejoin comes back
// How loud the room plays here (0–1) and whether it is muted: this device only, kept for the next
// visit. Neither touches what the analysers (level bars, probe) read.
let volume = Math.min(1, Math.max(0, Number(localStorage.getItem("onmic-volume") ?? "1")));
if (!Number.isFinite(volume)) volume = 1;
let listenMuted = localStorage.getItem("onmic-muted") === "1";
let myMeter = null; // {source, analyser, buf, timer}: the level of our own microphone

// ---- UI helpers ----------------------------------------------------------------------------
function setStatus(text) {
  $("status").textContent = text;
}

const ERRORS = {
  token_expired: "Your listening link has expired. Ask the host for a new link.",
  token_not_yet_valid: "Your listening link is not valid yet. Try again later.",
  token_malformed: "This listening link is not valid (its token is damaged). Ask the host for a new link.",
  token_bad_encoding: "This listening link is not valid (its token is damaged). Ask the host for a new link.",
  token_bad_signature: "This listening link is not valid. Ask the host for a new link.",
  token_wrong_app: "This listening link is for another service. Ask the host for a new link.",
  token_wrong_room: "This listening link is for another room. Ask the host for a new link.",
  token_missing_privilege: "This listening link does not allow joining. Ask the host for a new link.",
  no_such_room: "This room does not exist, or it is gone.",
  room_dismissed: "This room has been closed by its host.",
  banned: "You are banned from this room.",
  kicked: "You were removed from this room.",
  dismissed: "This room has been closed by its host.",
  replaced: "You opened this room in another tab or device; this one stopped.",
  host_muted: "A host muted your seat; only a host can unmute it.",
  chat_muted: "A host muted your chat for a while; your message was not sent.",
  rate_limited: "You are sending too fast; wait a moment and try again.",
  no_token: "This page needs a listening link with a token (…/listen/ROOM?token=…). Ask the host for one.",
  mic_refused: "Microphone access was refused. Allow the microphone for this site in the browser, then apply again.",
  media_unavailable: "The server's audio service is not running. Try again later.",
};

function showError(code, detail) {
  const box = $("error");
  box.textContent = ERRORS[code] || `Something went wrong (${code}${detail ? `: ${detail}` : ""}).`;
  box.dataset.code = code;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.code;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// ---- WebSocket protocol --------------------------------------------------------------------
function request(body) {
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected"));
      return;
    }
    const id = nextId++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ ...body, id }));
  });
}

function connect() {
  if (fatal) return;
  if (!token) {
    fatal = true;
    showError("no_token");
    setStatus("Not connected");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  setStatus("Connecting…");
  ws.onopen = () => {
    joinId = nextId++;
    // A listener in a large room: the membership as a count, not every join and leave (event
    // versions may then skip; the server sends a snapshot itself when this connection falls behind).
    ws.send(JSON.stringify({ id: joinId, type: "join", room, token, membership: "counts" }));
  };
  ws.onmessage = (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    onMessage(msg);
  };
  ws.onclose = (e) => {
    clearInterval(heartbeat);
    heartbeat = null;
    for (const [, p] of pending) p.reject(new Error("connection closed"));
    pending.clear();
    const final = { 4001: "replaced", 4002: "kicked", 4003: "dismissed" }[e.code];
    if (final) {
      fatal = true;
      showError(final);
      stopMedia();
    }
    if (left) {
      setControls(false);
      return;
    }
    if (fatal) {
      setStatus("Disconnected");
      setControls(false);
      return;
    }
    setStatus("Connection lost — reconnecting…");
    setControls(false);
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  };
}

function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      onJoined(msg);
      break;
    case "error":
      if (msg.id !== null && msg.id === joinId) {
        // A refused join: the token or the room is the problem; retrying will not help.
        joinId = null;
        fatal = true;
        showError(msg.code, msg.message);
        setStatus("Not connected");
        ws.close();
      } else if (msg.id !== undefined && msg.id !== null && pending.has(msg.id)) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        p.reject(Object.assign(new Error(msg.message), { code: msg.code }));
      }
      break;
    case "ok":
    case "pong":
      if (pending.has(msg.id)) {
        pending.get(msg.id).resolve(msg);
        pending.delete(msg.id);
      }
      break;
    case "snapshot":
      snapshot = msg.snapshot;
      if (pending.has(msg.id)) {
        pending.get(msg.id).resolve(msg);
        pending.delete(msg.id);
      }
      renderAll();
      break;
    case "event":
      onEvent(msg.event);
      break;
    case "volume_indication":
      onVolumes(msg.speakers || []);
      break;
    case "member_count":
      memberCount = msg.members;
      break;
    case "closing":
      if (["kicked", "dismissed", "replaced"].includes(msg.reason)) {
        fatal = true;
        showError(msg.reason);
      }
      break;
    default:
      break;
  }
}

function onJoined(msg) {
  joinId = null;
  const rejoin = me !== null;
  me = msg.uid;
  snapshot = msg.snapshot;
  gifts = msg.gifts || {};
  reconnectDelay = 500;
  clearError();
  setStatus(rejoin ? "Reconnected" : "Connected");
  clearInterval(heartbeat);
  heartbeat = setInterval(() => request({ type: "heartbeat" }).catch(() => {}), msg.heartbeat_ms || 10000);
  $("messages").replaceChildren();
  for (const ev of snapshot.recent || []) addMessage(ev);
  renderGifts();
  renderAll();
  setControls(true);
  if (msg.lost_seat) {
    // We lost our seat while away: never publish on it (no ghost mic).
    stopMic();
    addSystemLine(`You lost seat ${msg.lost_seat.seat} while away (${msg.lost_seat.reason}).`);
  }
  // A new peer connection on every (re)join: a new offer replaces the old one server-side, and
  // after a long drop the server has closed the old one anyway.
  startMedia().catch((e) => console.error("media", e));
}

function onEvent(ev) {
  if (!snapshot) return;
  if (ev.version <= snapshot.version) return;
  // Joined with `membership: "counts"`: other members' joins and leaves are left out, so versions
  // skip; a connection that falls behind gets a snapshot from the server unasked.
  snapshot.version = ev.version;
  switch (ev.type) {
    case "seat_changed": {
      const i = snapshot.seats.findIndex((s) => s.index === ev.seat.index);
      if (i >= 0) snapshot.seats[i] = ev.seat;
      break;
    }
    case "member_joined":
      snapshot.members[ev.member.uid] = ev.member;
      break;
    case "member_left":
      delete snapshot.members[ev.uid];
      break;
    case "application_added":
      snapshot.applications[ev.uid] = ev.pending;
      break;
    case "application_removed":
      delete snapshot.applications[ev.uid];
      break;
    case "invitation_added":
      snapshot.invitations[ev.uid] = ev.pending;
      break;
    case "invitation_removed":
      delete snapshot.invitations[ev.uid];
      break;
    case "chat":
    case "gift":
    case "notice":
    case "custom":
      addMessage(ev);
      break;
    case "dismissed":
      snapshot.dismissed = true;
      fatal = true;
      showError("room_dismissed");
      break;
    default:
      break;
  }
  renderAll();
}

function onVolumes(speakers) {
  const now = performance.now();
  for (const s of speakers) volumes.set(s.uid, { volume: s.volume, speaking: s.speaking, at: now });
  renderSeats();
  // Reports come every 500 ms while anyone speaks; forget stale ones if they stop coming.
  clearTimeout(volumeTimer);
  volumeTimer = setTimeout(() => {
    volumes.clear();
    renderSeats();
  }, 1500);
}

// ---- rendering -----------------------------------------------------------------------------
function mySeat() {
  return snapshot?.seats.find((s) => s.state === "occupied" && s.uid === me) || null;
}

function renderAll() {
  if (!snapshot) return;
  $("title").textContent = snapshot.title || snapshot.id;
  document.title = `${snapshot.title || snapshot.id} — Onmic`;
  renderSeats();
  renderActions();
  syncMic();
}

function renderSeats() {
  if (!snapshot) return;
  const list = $("seats");
  const items = snapshot.seats.map((seat) => {
    const li = el("li", `seat ${seat.state} ${seat.kind}`);
    li.dataset.seat = String(seat.index);
    const avatar = el("div", "avatar");
    const name = el("div", "name");
    // The role and the marks go below the name, clear of the speaking ring.
    const tags = el("div", "tags");
    tags.append(el("span", "index", seat.kind === "owner" ? "Host" : seat.kind === "boss" ? "Boss" : `#${seat.index}`));
    if (seat.state === "occupied") {
      avatar.textContent = [...seat.uid][0]?.toUpperCase() || "?";
      name.textContent = seat.uid;
      name.title = seat.uid;
      if (seat.uid === me) li.classList.add("mine");
      const v = volumes.get(seat.uid);
      if (v?.speaking && !seat.host_muted && !seat.self_muted) li.classList.add("speaking");
      if (seat.host_muted || seat.self_muted) {
        tags.append(el("span", "muted", seat.host_muted ? "muted by host" : "muted"));
        li.classList.add("is-muted");
      }
      const level = el("div", "level");
      const bar = el("span");
      bar.style.width = `${Math.round(((v?.volume || 0) / 255) * 100)}%`;
      level.append(bar);
      li.append(avatar, name, tags, level);
    } else {
      avatar.textContent = seat.state === "locked" ? "🔒" : "+";
      name.textContent = seat.state === "locked" ? "locked" : "empty";
      li.append(avatar, name, tags);
    }
    return li;
  });
  list.replaceChildren(...items);
}

function renderActions() {
  const seated = mySeat() !== null;
  const applied = snapshot && me && snapshot.applications[me] !== undefined;
  $("apply").hidden = seated || applied;
  $("cancel").hidden = !applied;
  $("leave-seat").hidden = !seated;
  const seat = mySeat();
  $("self-mute").hidden = !seated;
  $("self-mute").textContent = seat?.self_muted ? "Unmute myself" : "Mute myself";
  $("my-meter").hidden = !seated;
  $("my-meter").classList.toggle("held", Boolean(seat && (seat.self_muted || seat.host_muted)));
  $("me").textContent = me ? `You are ${me}${seated ? `, on seat ${mySeat().index}` : applied ? ", waiting for approval" : ""}` : "";
}

function renderGifts() {
  const sel = $("gift");
  const options = Object.entries(gifts).map(([id, g]) => {
    const o = el("option", null, `${g.name} (${g.value})`);
    o.value = id;
    return o;
  });
  sel.replaceChildren(...options);
}

function setControls(on) {
  for (const id of ["apply", "cancel", "self-mute", "leave-seat", "chat-text", "chat-send", "gift", "gift-send"]) {
    $(id).disabled = !on;
  }
}

function addMessage(ev) {
  const li = el("li", ev.type);
  switch (ev.type) {
    case "chat":
      li.append(el("span", "from", `${ev.from}:`), el("span", "text", ev.text));
      break;
    case "gift": {
      const name = gifts[ev.gift]?.name || ev.gift;
      const to = ev.to ? ` to ${ev.to}` : "";
      li.append(el("span", "from", ev.from), el("span", "text", `sent ${ev.count} × ${name}${to}`));
      break;
    }
    case "notice":
      li.classList.add("notice");
      li.textContent = ev.text;
      break;
    case "custom":
      return;
    default:
      return;
  }
  const list = $("messages");
  list.append(li);
  while (list.children.length > 200) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}

function addSystemLine(text) {
  const li = el("li", "notice", text);
  $("messages").append(li);
}

// ---- media: listen -------------------------------------------------------------------------

// Chromium decodes stereo Opus only when its own offer asks for it.
function withStereo(sdp) {
  const opus = [...sdp.matchAll(/^a=rtpmap:(\d+) opus\/48000\/2/gim)].map((m) => m[1]);
  return sdp
    .split("\r\n")
    .map((line) => {
      const m = line.match(/^a=fmtp:(\d+) (.*)$/);
      if (!m || !opus.includes(m[1])) return line;
      let p = m[2];
      if (!/(^|;)\s*stereo=1/.test(p)) p += ";stereo=1";
      if (!/sprop-stereo=1/.test(p)) p += ";sprop-stereo=1";
      if (!/maxaveragebitrate=/.test(p)) p += ";maxaveragebitrate=128000";
      return `a=fmtp:${m[1]} ${p}`;
    })
    .join("\r\n");
}

function iceGatheringDone(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 3000);
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

function ensureAudioContext() {
  if (!audioCtx) {
    audioCtx = new AudioContext({ sampleRate: 48000 });
    audioCtx.addEventListener("statechange", updateTap);
  }
  return audioCtx;
}

async function startMedia() {
  if (mediaStarting) await mediaStarting.catch(() => {});
  mediaStarting = doStartMedia();
  return mediaStarting;
}

async function doStartMedia() {
  // The microphone (if we hold a seat) survives the new peer connection: no new permission
  // prompt, no restart of its processing.
  stopMedia({ keepMic: true });
  const seatCount = snapshot.seats.length;
  const peer = new RTCPeerConnection();
  pc = peer;
  // One sendonly m-line for our microphone (no track until we hold a seat: nothing is sent),
  // then one recvonly m-line per seat ("slot" i carries whoever sits on seat i).
  mic = peer.addTransceiver("audio", { direction: "sendonly" });
  slots = [];
  ensureAudioContext();
  for (let i = 0; i < seatCount; i++) {
    const t = peer.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream([t.receiver.track]);
    const audio = new Audio();
    audio.autoplay = true;
    audio.volume = volume;
    audio.muted = listenMuted;
    audio.srcObject = stream;
    // Analysers per channel: the level bars and the test probe read them.
    const source = audioCtx.createMediaStreamSource(stream);
    const split = audioCtx.createChannelSplitter(2);
    source.connect(split);
    const analysers = [0, 1].map((ch) => {
      const a = audioCtx.createAnalyser();
      a.fftSize = 8192;
      a.smoothingTimeConstant = 0.5;
      split.connect(a, ch);
      return a;
    });
    slots.push({ audio, stream, analysers, source });
  }
  peer.onconnectionstatechange = () => {
    if (peer !== pc) return;
    if (peer.connectionState === "connected") setStatus("Listening");
    if (peer.connectionState === "failed") setStatus("Audio connection failed — rejoin to retry");
  };
  const offer = await peer.createOffer();
  await peer.setLocalDescription({ type: "offer", sdp: withStereo(offer.sdp) });
  await iceGatheringDone(peer);
  const resp = await fetch("/rtc/offer", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ room, token, offer: { type: "offer", sdp: peer.localDescription.sdp } }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    showError(body.code || "media_unavailable", body.message);
    return;
  }
  if (peer !== pc) return;
  await peer.setRemoteDescription(body);
  play();
  // Attach the microphone to the new connection if this member may speak.
  await syncMic();
}

// Starts every seat's audio and the context. Called from a tap's handler, everything starts in
// its turn (nothing awaited first) so the gesture counts for all of them. The "Tap to listen"
// button shows while audio is blocked: the context not running or an element refused to play.
// An empty seat's element may wait for data for a while; that is not blocked, so nothing here
// waits for the elements' promises to resolve.
function play() {
  for (const s of slots) s.audio.play().catch(() => updateTap());
  if (audioCtx && audioCtx.state === "suspended") audioCtx.resume().catch(() => {}).finally(updateTap);
  updateTap();
}

function updateTap() {
  const blocked = (audioCtx && audioCtx.state !== "running") || slots.some((s) => s.audio.paused);
  $("tap").hidden = !blocked;
}

function stopMedia({ keepMic = false } = {}) {
  if (!keepMic) stopMic();
  for (const s of slots) {
    s.audio.srcObject = null;
    s.source.disconnect();
  }
  slots = [];
  if (pc) pc.close();
  pc = null;
  mic = null;
}

// ---- media: speak --------------------------------------------------------------------------
// The microphone is sent only while this member holds a seat that is not muted (by a host or by
// itself): the server would drop anything else and, after a grace period, report it as bombing.
// On a muted seat the microphone stays open but detached, so unmuting is instant; losing the
// seat closes it.
let forcedMic = false; // test hook only: send without a seat
let micRequest = null; // a pending getUserMedia
let micSync = Promise.resolve(); // mic changes run one after another

function wantedMic() {
  const seat = mySeat();
  if (seat) return seat.host_muted || seat.self_muted ? "hold" : "send";
  return forcedMic ? "send" : "off";
}

function syncMic() {
  micSync = micSync.then(applyMic).catch((e) => console.error("microphone", e));
  return micSync;
}

async function acquireMic() {
  if (micStream) return micStream;
  if (!micRequest) {
    micRequest = navigator.mediaDevices
      .getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      })
      .finally(() => {
        micRequest = null;
      });
  }
  micStream = await micRequest;
  return micStream;
}

async function applyMic() {
  // Once seated, the test hook's "send anyway" ends: the seat decides from now on.
  if (mySeat()) forcedMic = false;
  const want = wantedMic();
  if (want === "off") {
    stopMic();
    return;
  }
  let stream;
  try {
    stream = await acquireMic();
  } catch (e) {
    forcedMic = false;
    showError("mic_refused", e.message);
    // Do not hold a seat we cannot speak on.
    if (mySeat()) request({ type: "leave_seat" }).catch(() => {});
    return;
  }
  // The seat may have changed while the browser asked for the microphone.
  const now = wantedMic();
  if (now === "off") {
    stopMic();
    return;
  }
  startMyMeter(stream);
  const track = now === "send" ? stream.getAudioTracks()[0] : null;
  if (mic && mic.sender.track !== track) await mic.sender.replaceTrack(track);
}

// The seated member's own voice: an analyser on the microphone (never played back here) drives
// the "Your mic" meter, muted or not, so one can see that the microphone hears them.
function startMyMeter(stream) {
  if (myMeter?.stream === stream) return;
  stopMyMeter();
  ensureAudioContext();
  const source = audioCtx.createMediaStreamSource(stream);
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const db = 10 * Math.log10(sum / buf.length + 1e-12);
    myMeter.db = db;
    // -60 dBFS (silence) .. 0 dBFS (full scale).
    const pct = Math.round(Math.min(1, Math.max(0, (db + 60) / 60)) * 100);
    $("my-level").style.width = `${pct}%`;
    $("my-level").parentElement.setAttribute("aria-valuenow", String(pct));
  }, 100);
  myMeter = { stream, source, analyser, timer, db: -120 };
}

function stopMyMeter() {
  if (!myMeter) return;
  clearInterval(myMeter.timer);
  myMeter.source.disconnect();
  myMeter = null;
  $("my-level").style.width = "0";
  $("my-level").parentElement.setAttribute("aria-valuenow", "0");
}

function stopMic() {
  forcedMic = false;
  stopMyMeter();
  if (mic && pc && mic.sender.track) mic.sender.replaceTrack(null).catch(() => {});
  if (micStream) for (const t of micStream.getTracks()) t.stop();
  micStream = null;
}

// ---- controls ------------------------------------------------------------------------------
function applyListening() {
  for (const s of slots) {
    s.audio.volume = volume;
    s.audio.muted = listenMuted;
  }
  $("volume").value = String(Math.round(volume * 100));
  $("listen-mute").setAttribute("aria-pressed", String(listenMuted));
  $("listen-mute").textContent = listenMuted ? "Unmute" : "Mute";
  $("listen-mute").title = listenMuted ? "Unmute the room" : "Mute the room";
}

// Leave the room (and any seat) and stop all audio; "Rejoin" comes back.
async function leaveRoom() {
  left = true;
  fatal = true;
  try {
    await request({ type: "leave" });
  } catch {
    // Already gone: nothing to tell the server.
  }
  if (ws) ws.close();
  stopMedia();
  updateTap();
  $("tap").hidden = true;
  snapshot = null;
  setStatus("You left the room");
  $("leave").textContent = "Rejoin";
  $("leave").title = "Join the room again";
}

function rejoin() {
  left = false;
  fatal = false;
  me = null;
  $("leave").textContent = "Leave";
  $("leave").title = "Leave the room";
  connect();
}

function wire() {
  applyListening();
  $("volume").addEventListener("input", () => {
    volume = Number($("volume").value) / 100;
    if (volume > 0 && listenMuted) listenMuted = false;
    localStorage.setItem("onmic-volume", String(volume));
    localStorage.setItem("onmic-muted", listenMuted ? "1" : "0");
    applyListening();
  });
  $("listen-mute").addEventListener("click", () => {
    listenMuted = !listenMuted;
    localStorage.setItem("onmic-muted", listenMuted ? "1" : "0");
    applyListening();
  });
  $("leave").addEventListener("click", () => (left ? rejoin() : leaveRoom()));
  $("tap").addEventListener("click", () => play());
  $("apply").addEventListener("click", async () => {
    try {
      await request({ type: "apply" });
    } catch (e) {
      showError(e.code || "apply_failed", e.message);
    }
  });
  $("cancel").addEventListener("click", () => request({ type: "cancel_apply" }).catch(() => {}));
  $("leave-seat").addEventListener("click", () => request({ type: "leave_seat" }).catch(() => {}));
  $("self-mute").addEventListener("click", async () => {
    const type = mySeat()?.self_muted ? "unmute_self" : "mute_self";
    try {
      await request({ type });
    } catch (e) {
      showError(e.code || "mute_failed", e.message);
    }
  });
  $("chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("chat-text");
    const text = input.value.trim();
    if (!text) return;
    try {
      await request({ type: "chat", text });
      input.value = "";
    } catch (err) {
      showError(err.code || "chat_failed", err.message);
    }
  });
  $("gift-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const gift = $("gift").value;
    if (!gift) return;
    try {
      await request({ type: "send_gift", gift, count: 1 });
    } catch (err) {
      showError(err.code || "gift_failed", err.message);
    }
  });
}

// ---- test hooks ----------------------------------------------------------------------------

// Per seat and channel: the loudest frequency bin and its level (dB), and the level at each of
// `freqs` (Hz), from the analysers. Read-only and harmless: it tells the page's own user what
// they are hearing.
window.onmicProbe = (freqs = []) => {
  if (!audioCtx) return { state: "no-audio", slots: [] };
  return {
    state: audioCtx.state,
    // Our uid once joined (null before).
    uid: me,
    connection: pc ? pc.connectionState : "none",
    // Whether the microphone is attached to the peer connection (being sent).
    micSending: Boolean(mic && mic.sender.track && mic.sender.track.readyState === "live"),
    // The level of our own microphone (dBFS) while seated, null otherwise.
    myLevelDb: myMeter ? myMeter.db : null,
    // What this listener set: the room's volume here and whether it is muted.
    volume,
    muted: listenMuted,
    elementVolumes: slots.map((s) => (s.audio.muted ? 0 : s.audio.volume)),
    slots: slots.map((s, seat) => ({
      seat,
      playing: !s.audio.paused,
      channels: s.analysers.map((a) => {
        const d = new Float32Array(a.frequencyBinCount);
        a.getFloatFrequencyData(d);
        let best = 1;
        for (let i = 2; i < d.length; i++) if (d[i] > d[best]) best = i;
        const at = freqs.map((f) => d[Math.round((f * a.fftSize) / audioCtx.sampleRate)]);
        return { freq: (best * audioCtx.sampleRate) / a.fftSize, db: d[best], at };
      }),
    })),
  };
};

if (testHooks) {
  // Only with ?test in the URL: send the microphone without holding a seat, to prove the server
  // refuses it (it drops the audio and reports bombing). The normal page never does this.
  window.onmicTestPublishNow = async () => {
    forcedMic = true;
    await syncMic();
    return Boolean(mic && mic.sender.track);
  };
  // Only with ?test: drop the WebSocket as a network failure would (the page reconnects).
  window.onmicTestDropSocket = () => {
    if (ws) ws.close();
    return true;
  };
  // Only with ?test: what this page hears from `seat` for `seconds`, both channels as decoded
  // (32-bit float little-endian, base64), with the receiver's repair counters every ~100 ms.
  // Where the browser has `MediaStreamTrackProcessor` (Chromium) the recording is the track's
  // own 10 ms chunks as the jitter buffer hands them to the page — the same audio the page's
  // `<audio>` element plays — with no Web Audio graph in between (`source: "track"`); elsewhere
  // a `ScriptProcessorNode` taps the stream in the page's audio context (`source: "webaudio"`),
  // whose 16384-frame buffers and stream FIFO add seams of their own.
  window.onmicTestRecord = (seat, seconds) => {
    const s = slots[seat];
    if (!s || !audioCtx) return Promise.reject(new Error(`no audio for seat ${seat}`));
    const track = s.stream.getAudioTracks()[0];
    const receiver = pc && pc.getReceivers().find((r) => r.track === track);
    const timeline = [];
    let got = 0;
    // Every 100 ms, where the recording is and the receiver's concealment and time-stretch
    // counters: a jump in the audio can then be told from the jitter buffer's own repairs.
    const sample = () => {
      if (!receiver) return;
      const frame = got;
      receiver.getStats().then((report) => {
        report.forEach((r) => {
          if (r.type !== "inbound-rtp") return;
          timeline.push({
            frame,
            // When the counters were read (performance.now(), ms): a track recording maps it to
            // the frame the jitter buffer had handed over by then, which under load runs ahead
            // of `frame` (the chunks the page had read).
            at: performance.now(),
            concealmentEvents: r.concealmentEvents,
            concealedSamples: r.concealedSamples,
            inserted: r.insertedSamplesForDeceleration,
            removed: r.removedSamplesForAcceleration,
          });
        });
      });
    };
    const b64 = (a) => {
      const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      let out = "";
      for (let i = 0; i < u.length; i += 0x8000) out += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
      return btoa(out);
    };
    if (typeof MediaStreamTrackProcessor === "function" && track) {
      return (async () => {
        const copy = track.clone();
        // Room for 10 s of chunks: a busy main thread must not make the processor drop any.
        const proc = new MediaStreamTrackProcessor({ track: copy, maxBufferSize: 1000 });
        const reader = proc.readable.getReader();
        let chans = null;
        let want = 0;
        let rate = 0;
        // Each chunk's frame count, timestamp (µs, when Chromium handed it over: a gap means its
        // audio thread stalled) and when the page read it (performance.now(), ms).
        const chunks = [];
        const ticker = setInterval(sample, 100);
        sample();
        try {
          while (!chans || got < want) {
            const { value: data, done } = await reader.read();
            if (done) throw new Error("the track ended while recording");
            try {
              if (!chans) {
                rate = data.sampleRate;
                want = Math.round(seconds * rate);
                chans = [new Float32Array(want), new Float32Array(want)];
              }
              const n = Math.min(data.numberOfFrames, want - got);
              chunks.push([data.numberOfFrames, data.timestamp, performance.now()]);
              for (let c = 0; c < 2; c++) {
                const plane = Math.min(c, data.numberOfChannels - 1);
                const tmp = new Float32Array(data.numberOfFrames);
                data.copyTo(tmp, { planeIndex: plane, format: "f32-planar" });
                chans[c].set(tmp.subarray(0, n), got);
              }
              got += n;
            } finally {
              data.close();
            }
          }
        } finally {
          clearInterval(ticker);
          reader.cancel().catch(() => {});
          copy.stop();
        }
        return { source: "track", rate, left: b64(chans[0]), right: b64(chans[1]), timeline, chunks };
      })();
    }
    return new Promise((resolve) => {
      const src = audioCtx.createMediaStreamSource(s.stream);
      // The largest buffer: the most slack for a busy main thread.
      const tap = audioCtx.createScriptProcessor(16384, 2, 2);
      const quiet = audioCtx.createGain();
      quiet.gain.value = 0;
      const want = Math.round(seconds * audioCtx.sampleRate);
      const chans = [new Float32Array(want), new Float32Array(want)];
      const ticker = setInterval(sample, 100);
      sample();
      tap.onaudioprocess = (e) => {
        if (got >= want) return;
        const n = Math.min(e.inputBuffer.length, want - got);
        for (let c = 0; c < 2; c++) {
          const ch = Math.min(c, e.inputBuffer.numberOfChannels - 1);
          chans[c].set(e.inputBuffer.getChannelData(ch).subarray(0, n), got);
        }
        got += n;
        if (got >= want) {
          tap.onaudioprocess = null;
          clearInterval(ticker);
          src.disconnect();
          tap.disconnect();
          quiet.disconnect();
          resolve({ source: "webaudio", rate: audioCtx.sampleRate, left: b64(chans[0]), right: b64(chans[1]), timeline, chunks: [] });
        }
      };
      src.connect(tap);
      tap.connect(quiet);
      quiet.connect(audioCtx.destination);
    });
  };
  // Only with ?test: the receive statistics of `seat` (getStats: inbound-rtp and its codec).
  window.onmicTestStats = async (seat) => {
    const s = slots[seat];
    const track = s && s.stream.getAudioTracks()[0];
    const receiver = pc && pc.getReceivers().find((r) => r.track === track);
    if (!receiver) return null;
    const out = { at: performance.now(), inbound: null, codec: null };
    const report = await receiver.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp") out.inbound = r;
    });
    if (out.inbound && out.inbound.codecId) out.codec = report.get(out.inbound.codecId) || null;
    return JSON.parse(JSON.stringify(out));
  };
}

wire();
connect();
