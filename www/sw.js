// Service worker of the demo: after one visit the page opens and answers with the network off.
//
// What it caches: the app shell (this folder) and the package's code (pkg/src, pkg/dist: the
// ES modules, the worker, the wasm-bindgen glue and the .wasm). Never the model weights: the
// package keeps those in OPFS (hashed, resumable), and a weight request passes by untouched.
// The modules are found by following the relative module/wasm paths in the code from app.js
// and pkg/src/index.js, so this file names no module of the package and cannot drift from it.
//
// Strategy: network-first, cache as the fallback. The page, the package modules, the worker
// and the .wasm must come from one build (wasm-bindgen glue and .wasm mismatched fail at
// start); stale-while-revalidate would serve the old set while refreshing files one by one and
// could mix two builds, while network-first serves the current set whenever the server
// answers and the last complete set when it does not. The cost is one revalidation per file
// per visit (304s for unchanged files), small next to the weights.
//
// CACHE is versioned: bump it when this file's caching rules change (the content itself is
// refreshed by network-first without a bump); activation deletes the older demo caches.

const CACHE = "qwen3-vl-demo-v1";
const SCOPE = new URL(self.registration.scope);
// Must all exist (install fails otherwise); what their code references is cached as found.
const REQUIRED = ["./", "app.js", "style.css", "manifest.webmanifest", "icon.svg", "../pkg/src/index.js"]
    .map((path) => new URL(path, SCOPE).href);
const PACKAGE_DIRS = ["../pkg/src/", "../pkg/dist/"].map((dir) => new URL(dir, SCOPE).href);
// Code and page files only: weight shards (.bin, .safetensors) and model JSON never match.
const APP_FILE = /\.(?:html|m?js|css|wasm|webmanifest|svg)$/;
// Relative paths to code in string literals: import "…", new URL("…", import.meta.url).
const CODE_REFERENCE = /["'`]((?:\.{1,2}\/)?[\w@.\/-]+\.(?:m?js|wasm))["'`]/g;

self.addEventListener("install", (event) => {
    event.waitUntil((async () => {
        await precache(await caches.open(CACHE));
        await self.skipWaiting();
    })());
});

self.addEventListener("activate", (event) => {
    event.waitUntil((async () => {
        const names = await caches.keys();
        await Promise.all(names.filter((n) => n.startsWith("qwen3-vl-demo-") && n !== CACHE).map((n) => caches.delete(n)));
        await self.clients.claim();
    })());
});

self.addEventListener("fetch", (event) => {
    const request = event.request;
    if (request.method !== "GET" || request.headers.has("range")) return;
    const key = cacheKey(request);
    if (key) event.respondWith(networkFirst(key));
});

/** The cache key of an app request, or null for anything the SW leaves alone. */
function cacheKey(request) {
    const url = new URL(request.url);
    if (url.origin !== SCOPE.origin) return null;
    // Every visit to the page (any ?model=… deep link) is the one cached page.
    if (request.mode === "navigate" && (url.pathname === SCOPE.pathname || url.pathname === `${SCOPE.pathname}index.html`)) {
        return SCOPE.href;
    }
    url.search = "";
    url.hash = "";
    const inApp = url.href.startsWith(SCOPE.href) || PACKAGE_DIRS.some((dir) => url.href.startsWith(dir));
    return inApp && APP_FILE.test(url.pathname) ? url.href : null;
}

async function networkFirst(key) {
    const cache = await caches.open(CACHE);
    try {
        const response = await fetch(key, { cache: "no-cache" });
        if (response.ok) await cache.put(key, response.clone());
        return response;
    } catch (e) {
        const cached = await cache.match(key);
        if (cached) return cached;
        throw e;
    }
}

/** Fetches `url` into the cache; throws when the server does not have it. */
async function put(cache, url) {
    const response = await fetch(url, { cache: "no-cache" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    await cache.put(url, response.clone());
    return response;
}

/**
 * The REQUIRED files and every same-origin code file reachable from their code by relative
 * paths. A path found in code that the server does not have (a name in a comment or a
 * message) is skipped.
 */
async function precache(cache) {
    const seen = new Set(REQUIRED);
    const queue = [...REQUIRED];
    while (queue.length) {
        const url = queue.shift();
        let response;
        try {
            response = await put(cache, url);
        } catch (e) {
            if (REQUIRED.includes(url)) throw e;
            continue;
        }
        if (!/\.m?js$/.test(new URL(url).pathname)) continue;
        for (const [, path] of (await response.text()).matchAll(CODE_REFERENCE)) {
            const found = new URL(path, url);
            if (found.origin === SCOPE.origin && !seen.has(found.href)) {
                seen.add(found.href);
                queue.push(found.href);
            }
        }
    }
}
