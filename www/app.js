// The qwen3-vl-webgpu demo page: pick a model, load it with progress, then chat about the
// camera, a screenshot or a picture; answers stream, grounding boxes are drawn on the image.
//
// URL parameters
//   ?model=<HF id | URL>   load this model at once (an id "owner/name", or an absolute or
//                          page-relative URL of a model folder: "/tests/…/tiny-q4/")
//   ?sw=0                  no service worker (and unregister one left from an earlier visit)
//   ?maxPixels=N           every image's pixel budget (default: the package's, 1024×768)
//
// Test hooks: window.qwenDemo
//   state        "starting" | "no-webgpu" | "idle" | "loading" | "ready" | "generating" | "error"
//                (also on <body data-state>)
//   model        the Qwen3VL instance once loaded, else null
//   lastAnswer   the text of the latest answer (grows while it streams)
//   lastResult   the latest ChatResult ({ ids, text, stop, promptTokens, timings })
//   grounding    the boxes/points parsed from the latest answer (www/grounding.js)
//   progress     the latest load progress event;  error: the latest error message or null
//   offlineReady Promise<boolean>: true once the service worker has cached the app shell
//   load(source)                  → Promise<Qwen3VL>  (an HF id, a URL, File[] or a directory handle)
//   ask(text, image?, options?)   → Promise<ChatResult>  (image: one source or an array; any
//                                   type the package takes, an HTMLVideoElement is snapshotted)
//   drawGrounding(text)           draws the grounding in `text` over the latest answer's image
//   clipFrames()                  frames the camera clip holds now (camera mode "clip")
//
// Stable element ids
//   model panel: #model-select #model-url #model-folder #model-folder-input #load #unload
//                #model-hint #progress-box #progress #progress-text #cache-size #clear-cache #info
//   inputs:      #camera-video #camera-toggle #capture #screenshot #file-input #live
//                #live-interval #live-status #camera-mode (frame | clip) #clip-options
//                #clip-seconds #clip-fps
//   chat:        #log (children div.turn.user with the question's canvases, article.turn.assistant
//                with .answer, .stats and, with grounding, canvas.grounding) #attachments #prompt
//                #send #stop #reset
//                #max-tokens
//   other:       #notice (role=alert, data-kind = error | warn | info) #adapter #drop-overlay

import { drawFigure, thumbnail } from "./figure.js";
import { parseGrounding } from "./grounding.js";

const GB = 1e9;
// Stored int4 size ≈ parameters × 4.5 bits; GPU memory = weights + a 4K-token f16 KV cache +
// activations (2B: 1663 MiB measured by `qwen3-vl bench --synthetic 2b`; 4B scaled likewise).
const MODELS = {
    "Qwen/Qwen3-VL-2B-Instruct": { download: 4.3 * GB, stored: 1.2 * GB, gpu: 1.8 * GB },
    "Qwen/Qwen3-VL-4B-Instruct": { download: 8.9 * GB, stored: 2.5 * GB, gpu: 3.3 * GB },
};
// The kernels are written for the WebGPU default limits (no f16, no subgroups needed); an
// adapter below them (e.g. a compatibility-mode one) cannot run the model at all.
const REQUIRED_LIMITS = {
    maxStorageBufferBindingSize: 128 * 2 ** 20,
    maxBufferSize: 128 * 2 ** 20,
    maxStorageBuffersPerShaderStage: 8,
    maxComputeInvocationsPerWorkgroup: 256,
    maxComputeWorkgroupStorageSize: 16384,
    maxComputeWorkgroupsPerDimension: 65535,
};

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

let Qwen3VL = null; // the package's class, imported at start so a missing build is a message
let gpuOk = false;
let conversation = []; // OpenAI-style messages, the whole conversation, sent with every turn
let images = []; // display bitmaps of the conversation's images, in order
let pending = []; // attachments for the next message: { source, bitmap, name }
let answering = null; // AbortController of the running load or answer
let answerDone = Promise.resolve(); // settles when the running answer has ended
let folderChoice = null; // a directory handle or File[] picked for "folder"
let camera = null; // the camera MediaStream
let clip = null; // the camera's recent frames, in camera mode "clip"
let liveTimer = 0;
let lastQuestion = ""; // the live mode asks this when the chat box is empty
let loadAfterPick = false; // the Load button opened the folder picker

const demo = {
    state: "starting",
    model: null,
    lastAnswer: "",
    lastResult: null,
    grounding: [],
    progress: null,
    error: null,
    offlineReady: registerServiceWorker(),
    load,
    ask,
    drawGrounding,
    clipFrames: () => clip?.frames.length ?? 0,
};
window.qwenDemo = demo;

// ---------- state, messages ----------

function setState(state) {
    demo.state = state;
    document.body.dataset.state = state;
    const busy = state === "loading" || state === "generating";
    $("load").disabled = !gpuOk || !Qwen3VL || busy;
    $("model-select").disabled = busy;
    $("unload").hidden = !demo.model;
    $("unload").disabled = busy;
    $("send").disabled = state !== "ready";
    $("stop").disabled = !busy;
    $("clear-cache").disabled = busy || !Qwen3VL;
}

function notice(kind, text) {
    const el = $("notice");
    el.dataset.kind = kind;
    el.textContent = text;
    el.hidden = false;
    if (kind === "error") demo.error = text;
}

function clearNotice() {
    $("notice").hidden = true;
    demo.error = null;
}

const messageOf = (e) => (e && e.message) || String(e);
const isAbort = (e) => e && e.name === "AbortError";

function fmtBytes(n) {
    if (!Number.isFinite(n)) return "?";
    if (n >= GB) return `${(n / GB).toFixed(2)} GB`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
    return `${Math.round(n / 1e3)} kB`;
}

// ---------- start ----------

async function start() {
    wireUi();
    setState("starting");
    await checkWebGpu();
    try {
        ({ Qwen3VL } = await import("../pkg/src/index.js"));
    } catch (e) {
        notice("error", `The package could not be loaded (${messageOf(e)}). Build it with pkg/build.sh and serve the repository root.`);
        setState("error");
        return;
    }
    setState(gpuOk ? "idle" : "no-webgpu");
    showModelHint();
    showCacheSize();
    const wanted = params.get("model");
    if (wanted && gpuOk) {
        selectInPicker(wanted);
        load(wanted).catch(() => {}); // the message is already on the page
    }
}

async function checkWebGpu() {
    const line = $("adapter");
    if (!navigator.gpu) {
        line.textContent = "No WebGPU";
        notice("error", isSecureContext
            ? "This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge (113+), Safari 26 or Firefox 141+."
            : "WebGPU needs a secure context: open this page over https or from http://localhost / 127.0.0.1.");
        return;
    }
    let adapter = null;
    try {
        adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    } catch (e) {
        adapter = null;
    }
    if (!adapter) {
        line.textContent = "No GPU adapter";
        notice("error", "WebGPU is present but offered no GPU adapter: the GPU may be blocklisted or WebGPU switched off (see chrome://gpu).");
        return;
    }
    const info = adapter.info || {};
    const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter;
    line.textContent = [info.vendor, info.architecture, info.description].filter(Boolean).join(" · ") || "WebGPU adapter";
    if (fallback) line.textContent += " (software fallback: slow)";
    const short = Object.entries(REQUIRED_LIMITS)
        .filter(([name, need]) => adapter.limits[name] < need)
        .map(([name, need]) => `${name} is ${adapter.limits[name]}, needs ${need}`);
    if (short.length) {
        line.textContent += " — too small";
        notice("error", `This GPU adapter is too small for Qwen3-VL: ${short.join("; ")}.`);
        return;
    }
    gpuOk = true;
}

// ---------- model ----------

function pickedSource() {
    const choice = $("model-select").value;
    if (choice === "url") return $("model-url").value.trim();
    if (choice === "folder") return folderChoice;
    return choice;
}

/** An HF id stays an id; anything else is a URL made absolute (the worker has another base). */
function resolveSource(source) {
    if (typeof source !== "string") return source;
    if (/^[\w.-]+\/[\w.-]+$/.test(source) && !source.startsWith(".")) return source;
    return new URL(source, location.href).href;
}

function selectInPicker(source) {
    if (MODELS[source]) {
        $("model-select").value = source;
    } else {
        $("model-select").value = "url";
        $("model-url").value = source;
    }
    showPickerFields();
}

function showPickerFields() {
    const choice = $("model-select").value;
    $("model-url").hidden = choice !== "url";
    $("model-folder").hidden = choice !== "folder";
    showModelHint();
}

async function showModelHint() {
    const need = MODELS[$("model-select").value];
    const hint = $("model-hint");
    if (!need) {
        hint.textContent = "A folder made by `qwen3-vl quantize` (manifest.json + shards) or an original Hugging Face folder (quantized to int4 here, once).";
        return;
    }
    hint.textContent = `First load reads about ${fmtBytes(need.download)} of weights and keeps ${fmtBytes(need.stored)} (int4) on this device; needs about ${fmtBytes(need.gpu)} of GPU memory.`;
    // WebGPU reports no memory size; the device's RAM (Chromium, capped at 8 GB) bounds it
    // where the GPU shares system memory.
    if (navigator.deviceMemory && navigator.deviceMemory * GB < 2 * need.gpu) {
        hint.textContent += ` This device reports ${navigator.deviceMemory} GB of memory, which may be too little.`;
    }
    const estimate = await navigator.storage?.estimate?.().catch(() => null);
    if (estimate && estimate.quota - estimate.usage < need.stored) {
        hint.textContent += ` This site may store only ${fmtBytes(estimate.quota - estimate.usage)} more: free some disk space first.`;
    }
}

async function showCacheSize() {
    if (!Qwen3VL) return;
    try {
        const bytes = await Qwen3VL.cacheSize();
        $("cache-size").textContent = bytes ? `— ${fmtBytes(bytes)} of weights cached` : "— nothing cached";
    } catch (e) {
        $("cache-size").textContent = `— ${messageOf(e)}`;
    }
}

async function load(source) {
    if (!Qwen3VL) throw new Error("the package is not loaded");
    if (!gpuOk) throw new Error(demo.error || "no usable WebGPU adapter");
    if (answering) throw new Error("busy: a load or an answer is running");
    if (!source || (Array.isArray(source) && !source.length)) {
        const message = "Choose a model first (a URL or a folder).";
        notice("warn", message);
        throw new Error(message);
    }
    source = resolveSource(source);
    if (demo.model) await unload();
    clearNotice();
    const controller = (answering = new AbortController());
    setState("loading");
    $("progress-box").hidden = false;
    const need = typeof source === "string" ? MODELS[source] : undefined;
    try {
        demo.model = await Qwen3VL.load(source, { weights: "q4", signal: controller.signal, onProgress: showProgress });
        $("progress").value = 1;
        $("progress-text").textContent = "Ready.";
        setState("ready");
        demo.model.info().then((info) => ($("info").textContent = JSON.stringify(info, null, 2)), () => {});
        return demo.model;
    } catch (e) {
        let text = isAbort(e) ? "Loading was stopped." : `Loading failed: ${messageOf(e).replace(/\.?$/, ".")}`;
        if (!isAbort(e) && /memory|device (was )?lost|allocat/i.test(messageOf(e))) {
            text += need
                ? ` This model needs about ${fmtBytes(need.gpu)} of GPU memory${need === MODELS["Qwen/Qwen3-VL-4B-Instruct"] ? "; the 2B needs about 1.8 GB" : ""}.`
                : " The GPU ran out of memory for this model.";
        }
        notice(isAbort(e) ? "info" : "error", text);
        $("progress-text").textContent = text;
        setState(isAbort(e) ? "idle" : "error");
        throw e;
    } finally {
        answering = null;
        setState(demo.state);
        showCacheSize();
    }
}

function showProgress(p) {
    demo.progress = p;
    const { phase, loaded, total, file } = p;
    $("progress").value = total ? loaded / total : 0;
    // "compile" counts pipelines; the other phases count bytes.
    const amount = phase === "compile" ? `${loaded} / ${total}` : `${fmtBytes(loaded)} / ${fmtBytes(total)}`;
    $("progress-text").textContent = [phase, file, amount].filter(Boolean).join(" · ");
}

async function unload() {
    stopLive();
    const model = demo.model;
    demo.model = null;
    conversation = [];
    images = [];
    if (model) await model.unload();
    setState("idle");
}

// ---------- images ----------

/** A still frame of a playing video element, as a canvas. */
function snapshot(video) {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return canvas;
}

/**
 * One image for the model and its bitmap for display. A video is snapshotted (its frame must
 * not change between display and model); a URL is made absolute for the worker; an
 * ImageBitmap is copied for display because the package may transfer the original.
 */
async function attachment(source, name) {
    if (source instanceof HTMLVideoElement) source = snapshot(source);
    if (typeof source === "string") source = new URL(source, location.href).href;
    let bitmap;
    try {
        const pixels = typeof source === "string" ? await (await fetch(source)).blob() : source;
        bitmap = await createImageBitmap(pixels);
    } catch (e) {
        throw new Error(`${name || "the image"} is not an image this browser can decode (${messageOf(e)})`);
    }
    return { source, bitmap, name: name || "image" };
}

/** The chat part of an attachment: a video part for a camera clip, else an image. */
function contentPart(a) {
    return a.clip ? { type: "video", ...a.clip } : { type: "image", image: a.source };
}

async function addPending(source, name) {
    try {
        pending.push(await attachment(source, name));
        renderPending();
    } catch (e) {
        notice("error", messageOf(e));
    }
}

function renderPending() {
    const box = $("attachments");
    box.replaceChildren(...pending.map((a, i) => {
        const item = document.createElement("figure");
        item.append(thumbnail(a.bitmap, 64));
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "×";
        remove.title = `Remove ${a.name}`;
        remove.onclick = () => {
            pending.splice(i, 1);
            renderPending();
        };
        item.append(remove);
        return item;
    }));
}

// ---------- chat ----------

// A question is a <div>, an answer an <article>: each role is its own element type, so
// `.turn.user:last-of-type` and `.turn.assistant:last-of-type` both find the latest one.
function turn(role) {
    const el = document.createElement(role === "user" ? "div" : "article");
    el.className = `turn ${role}`;
    $("log").append(el);
    return el;
}

function scrollLog() {
    const log = $("log");
    log.scrollTop = log.scrollHeight;
}

/** Re-parses the answer so far and draws its grounding on the image the answer refers to. */
function showGrounding(answerEl, text) {
    const items = parseGrounding(text);
    demo.grounding = items;
    const bitmap = images[images.length - 1];
    if (!items.length || !bitmap) return;
    let canvas = answerEl.querySelector("canvas.grounding");
    if (!canvas) {
        canvas = document.createElement("canvas");
        canvas.className = "grounding";
        answerEl.insertBefore(canvas, answerEl.querySelector(".stats"));
    }
    drawFigure(canvas, bitmap, items);
}

function drawGrounding(text) {
    const answerEl = [...$("log").querySelectorAll(".turn.assistant")].pop();
    if (!answerEl || !images.length) throw new Error("no answer with an image to draw on");
    showGrounding(answerEl, text);
    answerEl.querySelector("canvas.grounding")?.scrollIntoView({ block: "nearest" });
    return demo.grounding;
}

function statsLine(result, wall) {
    const t = result.timings || {};
    const ttft = Number.isFinite(t.timeToFirstTokenMs) ? t.timeToFirstTokenMs : wall.ttft;
    const parts = [];
    if (Number.isFinite(ttft)) parts.push(`first token ${(ttft / 1000).toFixed(2)} s`);
    if (Number.isFinite(t.prefillTokensPerS)) {
        const cached = t.cachedTokens ? `, ${t.cachedTokens} cached` : "";
        parts.push(`prefill ${t.prefillTokensPerS.toFixed(1)} tok/s (${t.computedTokens} new${cached})`);
    }
    if (Number.isFinite(t.decodeTokensPerS)) parts.push(`${t.decodeTokensPerS.toFixed(1)} tok/s`);
    if (result.ids) parts.push(`${result.ids.length} tokens`);
    if (result.stop && result.stop !== "stop") parts.push({ length: "hit max tokens", context_full: "context full" }[result.stop] ?? result.stop);
    return parts.join(" · ");
}

async function ask(text, imageSources = [], options = {}) {
    if (!demo.model) throw new Error("no model loaded");
    if (answering) throw new Error("an answer is still streaming");
    const sources = [imageSources].flat().filter(Boolean);
    const attached = await Promise.all(sources.map((s, i) => attachment(s, `image ${i + 1}`)));
    return startAnswer(text, attached, options);
}

function startAnswer(text, attached, options) {
    const done = answer(text, attached, options);
    answerDone = done.catch(() => {});
    return done;
}

async function answer(text, attached, options) {
    const controller = (answering = new AbortController());
    setState("generating");
    clearNotice();

    const userEl = turn("user");
    for (const a of attached) userEl.append(thumbnail(a.bitmap, 96));
    const p = document.createElement("p");
    p.textContent = text;
    userEl.append(p);
    const content = [...attached.map(contentPart), { type: "text", text }];
    conversation.push({ role: "user", content });
    images.push(...attached.map((a) => a.bitmap));

    const botEl = turn("assistant");
    const answerEl = document.createElement("p");
    answerEl.className = "answer pending";
    const stats = document.createElement("p");
    stats.className = "stats";
    stats.textContent = "thinking…";
    botEl.append(answerEl, stats);
    scrollLog();

    let reply = "";
    const t0 = performance.now();
    const wall = { ttft: NaN };
    demo.lastAnswer = "";
    demo.grounding = [];
    try {
        const stream = demo.model.chat(conversation, {
            maxNewTokens: Number($("max-tokens").value) || 512,
            ...(params.has("maxPixels") ? { maxPixels: Number(params.get("maxPixels")) } : {}),
            ...options,
            signal: controller.signal,
        });
        for await (const delta of stream) {
            if (!reply && delta) wall.ttft = performance.now() - t0;
            reply += delta;
            demo.lastAnswer = reply;
            answerEl.textContent = reply;
            stats.textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s…`;
            showGrounding(botEl, reply);
            scrollLog();
        }
        const result = await stream.result;
        reply = result.text || reply; // a cancelled result may carry no text: keep what streamed
        demo.lastAnswer = answerEl.textContent = reply;
        demo.lastResult = result;
        showGrounding(botEl, reply);
        stats.textContent = statsLine(result, wall);
        conversation.push({ role: "assistant", content: reply });
        return result;
    } catch (e) {
        if (controller.signal.aborted) {
            // The model has seen the partial answer: keep it in the conversation.
            stats.textContent = "stopped";
            conversation.push({ role: "assistant", content: reply });
            if (isAbort(e)) return { text: reply, stop: "cancelled" };
        } else {
            conversation.pop();
            images.splice(images.length - attached.length, attached.length);
            stats.textContent = "";
        }
        answerEl.classList.add("failed");
        answerEl.textContent = reply ? `${reply}\n\n${messageOf(e)}` : messageOf(e);
        notice("error", `The answer failed: ${messageOf(e)}`);
        throw e;
    } finally {
        answerEl.classList.remove("pending");
        answering = null;
        setState(demo.model ? "ready" : "idle");
        scrollLog();
    }
}

function send() {
    const text = $("prompt").value.trim() || (pending.length ? "Describe this image." : "");
    if (!text || demo.state !== "ready") return;
    const attached = pending;
    pending = [];
    renderPending();
    lastQuestion = text;
    $("prompt").value = "";
    startAnswer(text, attached, {}).catch(() => {}); // shown in the turn and the notice
}

async function resetConversation() {
    stopLive();
    if (demo.state === "generating") {
        answering.abort();
        await answerDone; // its partial answer must not land in the new conversation
    }
    conversation = [];
    images = [];
    $("log").replaceChildren();
    if (demo.model) await demo.model.reset();
}

// ---------- camera, live mode, screenshot ----------

function mediaError(e, what) {
    if (e.name === "NotAllowedError" || e.name === "SecurityError") {
        return what === "camera"
            ? "Camera permission was denied. Allow the camera for this site (the icon beside the address bar), then start it again."
            : "Screen capture was cancelled.";
    }
    if (e.name === "NotFoundError" || e.name === "OverconstrainedError") return "No camera was found on this device.";
    if (e.name === "NotReadableError" || e.name === "AbortError") return `The ${what} is in use by another application or could not be started.`;
    return `The ${what} could not be started: ${messageOf(e)}`;
}

async function startCamera() {
    if (!navigator.mediaDevices?.getUserMedia) {
        notice("error", "This browser gives no camera access here (it needs https or localhost).");
        return;
    }
    try {
        camera = await navigator.mediaDevices.getUserMedia({
            video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: "environment" },
            audio: false,
        });
    } catch (e) {
        notice(e.name === "NotAllowedError" ? "warn" : "error", mediaError(e, "camera"));
        return;
    }
    const video = $("camera-video");
    video.srcObject = camera;
    camera.getVideoTracks()[0].addEventListener("ended", stopCamera);
    await video.play();
    video.hidden = false;
    $("stage-hint").hidden = true;
    $("camera-toggle").textContent = "Stop camera";
    $("capture").disabled = false;
    $("live").disabled = false;
    cameraMode();
}

function stopCamera() {
    stopLive();
    clip?.stop();
    clip = null;
    camera?.getTracks().forEach((t) => t.stop());
    camera = null;
    const video = $("camera-video");
    video.srcObject = null;
    video.hidden = true;
    $("stage-hint").hidden = false;
    $("camera-toggle").textContent = "Start camera";
    $("capture").disabled = true;
    $("live").disabled = true;
}

/**
 * The camera's last `seconds` at `fps`, kept as ImageBitmaps with their capture times: what
 * "what just happened?" needs, sent as one video part (Qwen3-VL's native video input).
 */
function recorder(video, seconds, fps) {
    const frames = []; // { bitmap, t } oldest first
    let busy = false;
    const timer = setInterval(async () => {
        if (busy || !video.videoWidth) return;
        busy = true;
        try {
            frames.push({ bitmap: await createImageBitmap(video), t: performance.now() / 1000 });
            while (frames.length > Math.max(2, Math.round(seconds * fps))) frames.shift().bitmap.close();
        } finally {
            busy = false;
        }
    }, 1000 / fps);
    return {
        frames,
        /** Copies of the frames (the recorder closes old ones) and their times from the first. */
        async take() {
            const now = [...frames];
            if (!now.length) throw new Error("the clip has no frame yet: wait a moment");
            return {
                frames: await Promise.all(now.map((f) => createImageBitmap(f.bitmap))),
                timestamps: now.map((f) => Math.round((f.t - now[0].t) * 100) / 100),
            };
        },
        stop() {
            clearInterval(timer);
            frames.splice(0).forEach((f) => f.bitmap.close());
        },
    };
}

/** Applies the camera mode: a frame per question, or a recorded clip. */
function cameraMode() {
    const isClip = $("camera-mode").value === "clip";
    $("clip-options").hidden = !isClip;
    $("capture").textContent = isClip ? "Capture clip" : "Capture frame";
    clip?.stop();
    clip = null;
    if (isClip && camera) {
        const seconds = Math.min(30, Math.max(1, Number($("clip-seconds").value) || 4));
        const fps = Math.min(8, Math.max(0.5, Number($("clip-fps").value) || 2));
        clip = recorder($("camera-video"), seconds, fps);
    }
}

/** The camera's clip as a pending attachment (shown as its last frame). */
async function captureClip() {
    try {
        const taken = await clip.take();
        const last = taken.frames[taken.frames.length - 1];
        const seconds = taken.timestamps[taken.timestamps.length - 1];
        return { source: null, clip: taken, bitmap: await createImageBitmap(last), name: `clip: ${taken.frames.length} frames, ${seconds.toFixed(1)} s` };
    } catch (e) {
        notice("warn", messageOf(e));
        return null;
    }
}

async function capture() {
    if (!clip) return addPending($("camera-video"), "camera frame");
    const a = await captureClip();
    if (a) {
        pending.push(a);
        renderPending();
    }
}

function startLive() {
    clearInterval(liveTimer);
    const seconds = Math.max(1, Number($("live-interval").value) || 5);
    liveTimer = setInterval(liveTick, seconds * 1000);
    $("live").checked = true;
    liveTick();
}

function stopLive() {
    clearInterval(liveTimer);
    liveTimer = 0;
    $("live").checked = false;
    $("live-status").textContent = "";
}

/** Each tick is its own one-question conversation about the current frame. */
async function liveTick() {
    const status = $("live-status");
    if (!camera) return stopLive();
    if (demo.state !== "ready") {
        status.textContent = demo.state === "generating" ? "skipped a tick: still answering" : "waiting for the model";
        return;
    }
    status.textContent = `asked at ${new Date().toLocaleTimeString()}`;
    const question = $("prompt").value.trim() || lastQuestion || (clip ? "What just happened?" : "Describe what you see.");
    const frame = clip ? await captureClip() : snapshot($("camera-video"));
    if (!frame) return;
    conversation = [];
    images = [];
    $("log").replaceChildren();
    try {
        await demo.model.reset();
        if (clip) await startAnswer(question, [frame], {});
        else await ask(question, frame);
    } catch (e) {
        // shown in the turn and the notice
    }
}

/** One frame of the shared screen; the capture stops at once. */
async function screenshot() {
    if (!navigator.mediaDevices?.getDisplayMedia) {
        notice("error", "Screen capture is not available in this browser (mobile browsers do not offer it).");
        return;
    }
    let stream;
    try {
        stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
        notice(e.name === "NotAllowedError" ? "info" : "error", mediaError(e, "screen capture"));
        return;
    }
    try {
        const video = document.createElement("video");
        video.muted = true;
        video.srcObject = stream;
        await video.play();
        if (!video.videoWidth) await new Promise((ok) => video.addEventListener("loadeddata", ok, { once: true }));
        await addPending(snapshot(video), "screenshot");
    } finally {
        stream.getTracks().forEach((t) => t.stop());
    }
}

// ---------- wiring ----------

function addFiles(files) {
    for (const f of files) {
        if (f.type.startsWith("image/")) addPending(f, f.name);
        else notice("warn", `${f.name} is not an image.`);
    }
}

function wireUi() {
    $("model-select").addEventListener("change", showPickerFields);
    $("load").addEventListener("click", () => {
        if ($("model-select").value === "folder" && !folderChoice) {
            loadAfterPick = true;
            chooseFolder();
        } else {
            load(pickedSource()).catch(() => {}); // the message is on the page
        }
    });
    $("model-folder").addEventListener("click", () => {
        loadAfterPick = false;
        chooseFolder();
    });
    $("model-folder-input").addEventListener("change", (e) => folderChosen([...e.target.files], `${e.target.files.length} files`));
    $("unload").addEventListener("click", () => unload().catch((e) => notice("error", messageOf(e))));
    $("clear-cache").addEventListener("click", async () => {
        try {
            await Qwen3VL.clearCache();
        } catch (e) {
            notice("error", `Could not delete the cache: ${messageOf(e)}`);
        }
        showCacheSize();
    });

    $("composer").addEventListener("submit", (e) => {
        e.preventDefault();
        send();
    });
    $("prompt").addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
        }
    });
    $("stop").addEventListener("click", () => answering?.abort());
    $("reset").addEventListener("click", () => resetConversation().catch((e) => notice("error", messageOf(e))));

    $("camera-toggle").addEventListener("click", () => (camera ? stopCamera() : startCamera()));
    $("capture").addEventListener("click", capture);
    for (const id of ["camera-mode", "clip-seconds", "clip-fps"]) $(id).addEventListener("change", cameraMode);
    $("live").addEventListener("change", (e) => (e.target.checked ? startLive() : stopLive()));
    $("live-interval").addEventListener("change", () => liveTimer && startLive());
    $("screenshot").addEventListener("click", screenshot);
    $("file-input").addEventListener("change", (e) => {
        addFiles(e.target.files);
        e.target.value = "";
    });

    const overlay = $("drop-overlay");
    document.addEventListener("dragover", (e) => {
        if (![...e.dataTransfer.types].includes("Files")) return;
        e.preventDefault();
        overlay.hidden = false;
    });
    document.addEventListener("dragleave", (e) => {
        if (!e.relatedTarget) overlay.hidden = true;
    });
    document.addEventListener("drop", (e) => {
        e.preventDefault();
        overlay.hidden = true;
        addFiles(e.dataTransfer.files);
    });
    document.addEventListener("paste", (e) => {
        const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
        if (files.length) {
            e.preventDefault();
            addFiles(files);
        }
    });
}

/** showDirectoryPicker where there is one (Chromium), else the webkitdirectory input. */
async function chooseFolder() {
    if (!window.showDirectoryPicker) {
        $("model-folder-input").click();
        return;
    }
    try {
        const dir = await window.showDirectoryPicker({ id: "qwen3-vl-model" });
        folderChosen(dir, dir.name);
    } catch (e) {
        if (!isAbort(e)) notice("error", `Could not open the folder: ${messageOf(e)}`);
    }
}

function folderChosen(choice, label) {
    if (Array.isArray(choice) && !choice.length) return;
    folderChoice = choice;
    $("model-folder").textContent = label;
    if (loadAfterPick) load(choice).catch(() => {});
    loadAfterPick = false;
}

async function registerServiceWorker() {
    if (!("serviceWorker" in navigator)) return false;
    if (params.get("sw") === "0") {
        const registrations = await navigator.serviceWorker.getRegistrations();
        await Promise.all(registrations.map((r) => r.unregister()));
        return false;
    }
    let registration;
    try {
        registration = await navigator.serviceWorker.register("./sw.js");
    } catch (e) {
        console.warn("service worker:", e);
        return false;
    }
    if (registration.active) return true;
    // The first install: ready once it has cached everything, or never (it fails when the
    // server lacks a file it needs: "redundant").
    const worker = registration.installing || registration.waiting;
    return new Promise((resolve) => {
        const settle = () => {
            if (worker.state === "activated") resolve(true);
            else if (worker.state === "redundant") resolve(false);
        };
        worker.addEventListener("statechange", settle);
        settle();
    });
}

start();
