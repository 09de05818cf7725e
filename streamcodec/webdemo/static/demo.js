// streamcodec WebRTC demo page: send the mic (or a file) to the Python peer, play and
// draw what comes back. URL parameters (used by the headless test and screenshots):
//   autostart=1        start at once (with --use-fake-ui-for-media-stream)
//   record=SECONDS     record the returned audio that long and send it to the server
//   preset=NAME        link preset; source=mic|file
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const demo = (window.demo = { state: "loading", stats: null, error: null, recorded: false });

let ws = null, pc = null, ctx = null, localStream = null, fileAudio = null, timer = null;
const analysers = {};

function setState(s) { demo.state = s; $("state").textContent = s; }
function fmt(x, d = 0) { return x === undefined || x === null ? "—" : Number(x).toFixed(d); }

function connectSignalling() {
  return new Promise((resolve, reject) => {
    ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data), resolve);
    ws.onerror = () => reject(new Error("websocket error"));
    ws.onclose = () => { if (demo.state !== "stopped") setState("server closed the connection"); };
  });
}

let answerWaiter = null;
function onMessage(msg, helloResolve) {
  if (msg.type === "hello") {
    $("codec").textContent = msg.codec;
    const sel = $("preset");
    sel.innerHTML = "";
    for (const p of msg.presets) {
      const o = document.createElement("option");
      o.value = p.name; o.textContent = p.label; sel.appendChild(o);
    }
    sel.value = params.get("preset") || msg.preset;
    describeLink();
    helloResolve();
  } else if (msg.type === "answer" && answerWaiter) {
    answerWaiter(msg.sdp);
  } else if (msg.type === "stats") {
    showStats(msg);
  } else if (msg.type === "error") {
    demo.error = msg.message; setState("error: " + msg.message);
  }
}

function describeLink() {
  const sel = $("preset");
  const label = sel.options[sel.selectedIndex] ? sel.options[sel.selectedIndex].textContent : "";
  $("linkdesc").textContent = label ? `(${label})` : "";
}

function showStats(s) {
  demo.stats = s;
  $("s_payload").textContent = fmt(s.payload_bps);
  $("s_wire").textContent = fmt(s.wire_bps);
  $("s_wire_rev").textContent = fmt(s.wire_reverse_bps);
  $("s_msgs").textContent = `${fmt(s.messages_per_s, 1)} (${s.frames_per_message})`;
  $("s_loss").textContent = `${fmt(s.recent_loss_pct, 1)}% (${fmt(s.loss_pct, 1)}%)`;
  $("s_packets").textContent = `${s.packets_received} / ${s.packets_sent}`;
  $("s_conceal").textContent = `${s.frames_concealed} / ${s.frames_played}`;
  $("s_margin").textContent = fmt(s.playout_margin_ms);
}

async function sourceStream() {
  if ($("source").value === "file") {
    const f = $("file").files[0];
    if (!f) throw new Error("choose an audio file first");
    fileAudio = new Audio(URL.createObjectURL(f));
    const src = ctx.createMediaElementSource(fileAudio);
    const dest = ctx.createMediaStreamDestination();
    src.connect(dest);
    await fileAudio.play();
    return dest.stream;
  }
  return navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
}

function analyse(name, stream) {
  const a = ctx.createAnalyser();
  a.fftSize = 1024;
  a.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(stream).connect(a);
  analysers[name] = { analyser: a, bins: new Float32Array(a.frequencyBinCount) };
}

function colour(v) { // v in [0, 1] -> a dark-to-bright "inferno"-like ramp
  const r = Math.min(255, 40 + 320 * v), g = Math.max(0, Math.min(255, 380 * v - 120));
  const b = Math.max(0, Math.min(255, 140 - 200 * Math.abs(v - 0.35) + 120 * (v > 0.85)));
  return `rgb(${r | 0},${g | 0},${b | 0})`;
}

function drawColumn(canvas, entry) {
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height, step = 2;
  g.drawImage(canvas, -step, 0);
  g.fillStyle = "#000";
  g.fillRect(w - step, 0, step, h);
  if (!entry) return;
  entry.analyser.getFloatFrequencyData(entry.bins);
  const maxBin = Math.floor(8000 / (ctx.sampleRate / 2) * entry.bins.length);
  for (let y = 0; y < h; y++) {
    const bin = Math.floor((1 - y / h) * maxBin);
    const v = Math.max(0, Math.min(1, (entry.bins[bin] + 100) / 70));
    g.fillStyle = colour(v);
    g.fillRect(w - step, y, step, 1);
  }
}

function waitForIce(conn) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    conn.addEventListener("icegatheringstatechange", () => {
      if (conn.iceGatheringState === "complete") resolve();
    });
  });
}

async function start() {
  $("start").disabled = true;
  setState("starting…");
  ctx = new AudioContext();
  await ctx.resume();
  localStream = await sourceStream();
  analyse("in", localStream);
  pc = new RTCPeerConnection({ iceServers: [] });
  for (const t of localStream.getAudioTracks()) pc.addTrack(t, localStream);
  pc.ontrack = (ev) => {
    const remote = ev.streams[0] || new MediaStream([ev.track]);
    $("remote").srcObject = remote; // also makes Chrome feed the stream to WebAudio
    analyse("out", remote);
    setState("in call");
    const seconds = Number(params.get("record") || 0);
    if (seconds > 0) record(remote, seconds);
  };
  pc.onconnectionstatechange = () => {
    if (pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
      setState("media connection " + pc.connectionState);
    }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  setState("connecting the Python peers…");
  const answer = new Promise((resolve) => { answerWaiter = resolve; });
  ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, preset: $("preset").value }));
  await pc.setRemoteDescription({ type: "answer", sdp: await answer });
  timer = setInterval(() => {
    drawColumn($("spec_in"), analysers.in);
    drawColumn($("spec_out"), analysers.out);
  }, 30);
  $("stop").disabled = false;
}

function record(stream, seconds) {
  const mime = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
  const rec = new MediaRecorder(stream, mime ? { mimeType: mime } : {});
  const chunks = [];
  rec.ondataavailable = (ev) => { if (ev.data.size) chunks.push(ev.data); };
  rec.onstop = async () => {
    const blob = new Blob(chunks, { type: rec.mimeType });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    ws.send(JSON.stringify({ type: "recording", mime: rec.mimeType, data: btoa(bin), seconds }));
    demo.recorded = true;
    setState("in call (recording sent)");
  };
  rec.start(500);
  setTimeout(() => rec.stop(), seconds * 1000);
}

function stop() {
  if (timer) clearInterval(timer);
  if (pc) pc.close();
  pc = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  if (fileAudio) fileAudio.pause();
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "bye" }));
  setState("stopped");
  $("stop").disabled = true;
}

$("source").onchange = () => { $("file").style.display = $("source").value === "file" ? "" : "none"; };
$("preset").onchange = describeLink;
$("start").onclick = () => start().catch((e) => { demo.error = String(e); setState("error: " + e); });
$("stop").onclick = stop;

connectSignalling().then(() => {
  setState("ready");
  if (params.get("source")) { $("source").value = params.get("source"); $("source").onchange(); }
  if (params.get("autostart") === "1") $("start").onclick();
}).catch((e) => { demo.error = String(e); setState("error: " + e); });
