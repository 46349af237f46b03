// The app's service worker: it controls the page (and workers in its scope) and passes every
// request to the network, as a PWA's would for files it has not cached.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (event) => event.respondWith(fetch(event.request)));
