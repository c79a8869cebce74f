// labkit (labkit.lite.serviceworker): the site's files from the browser's cache on a second visit.
//
// Put before JupyterLite's own service worker in the site's service-worker.js (that one still
// answers the kernel's file system calls, /api/drive and /api/stdin). Every other GET of the
// site is served from a cache named after the site's build (static/labkit/build.json, a hash
// of its files), filled as the files are first fetched: a static server cannot say that its
// files do not change, the build's name can. Each page load asks for build.json first; when
// it names another build (the site was built again), the other builds' caches are dropped and
// the page loads from the server, filling a new one. Offline, the last build's cache serves.
// (precache-worker.js, a second service worker, puts JupyterLab's scripts in the same cache
// compiled, once a first visit's kernel is up; the lab page registers this one at once on a first
// visit, so that the kernel's files, Pyodide's wasm with them, come through this cache: labkit.lite.early.)
const LABKIT_PREFIX = "labkit-site-";
const LABKIT_BUILD = new URL("static/labkit/build.json", self.registration.scope).href;
let labkitCacheName = null;

async function labkitCache(pageLoad) {
  if (pageLoad || labkitCacheName === null) {
    try {
      const response = await fetch(LABKIT_BUILD, { cache: "no-store" });
      labkitCacheName = LABKIT_PREFIX + (await response.json()).build;
      for (const name of await caches.keys()) {
        if (name.startsWith(LABKIT_PREFIX) && name !== labkitCacheName) await caches.delete(name);
      }
    } catch {
      // offline (or no build.json): the cache there is, if any
      labkitCacheName ??= (await caches.keys()).find((name) => name.startsWith(LABKIT_PREFIX)) ?? null;
    }
  }
  return labkitCacheName === null ? null : caches.open(labkitCacheName);
}

async function labkitFromCache(event) {
  const cache = await labkitCache(event.request.mode === "navigate");
  const hit = cache && (await cache.match(event.request));
  if (hit) return hit;
  const response = await fetch(event.request);
  if (!cache || response.status !== 200 || response.type !== "basic") return response;
  if (new URL(event.request.url).pathname.endsWith(".wasm")) {
    // Pyodide's interpreter: answered from the cache already, where the browser keeps the machine
    // code it compiles it to (the next visit compiles nothing); from the network, it cannot
    await cache.put(event.request, response);
    return cache.match(event.request);
  }
  event.waitUntil(cache.put(event.request, response.clone()));
  return response;
}

async function labkitRespond(event) {
  try {
    return (await labkitFromCache(event)) ?? (await fetch(event.request));
  } catch (err) {
    // no cache to be had (a full disk, a private window): the network, as without this worker
    console.warn("labkit: the site's cache failed, fetching", event.request.url, err);
    return fetch(event.request);
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.href === LABKIT_BUILD ||
      /\/api\/(drive|stdin|service-worker-heartbeat)/.test(url.pathname)) {
    return; // JupyterLite's handler below
  }
  event.stopImmediatePropagation();
  event.respondWith(labkitRespond(event));
});
