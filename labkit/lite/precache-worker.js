// labkit (labkit.lite.serviceworker): JupyterLab's scripts put in the site's cache compiled.
//
// A browser keeps the code it compiles a script to beside the script in the cache, for the next
// page that loads it, only when the script was put there by a service worker while it installs
// (Chromium: then at once, compiling it whole; otherwise from the third load on). The site's own
// service worker installs before the page has loaded anything; this one is registered by the lab
// page once the lesson's kernel is up (labkit.lite.early), for a scope with no pages, and on
// installing puts the scripts that page loaded (the list it left in LIST_CACHE) in the build's
// cache, where the site's service worker answers them from on the next visit. A new build is a
// new script here (its build name below), installed again.
const PRECACHE_BUILD = "__BUILD__";
const PRECACHE_SITE_CACHE = "labkit-site-" + PRECACHE_BUILD; // as service-worker.js names it
const PRECACHE_LIST_CACHE = "labkit-precache";
const PRECACHE_LIST = new URL("precache.json", self.registration.scope).href;

async function precache() {
  const lists = await caches.open(PRECACHE_LIST_CACHE);
  const listed = await lists.match(PRECACHE_LIST);
  if (!listed) return;
  const scripts = await listed.json();
  await caches.delete(PRECACHE_LIST_CACHE);
  const cache = await caches.open(PRECACHE_SITE_CACHE);
  const here = new URL(self.registration.scope).origin;
  const mine = scripts.filter((url) => new URL(url).origin === here);
  // one by one: a script that is gone (the site was built again) leaves the others cached
  for (const url of mine) {
    try {
      await cache.add(url);
    } catch (err) {
      console.warn("labkit: could not precache", url, err);
    }
  }
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache().catch((err) => console.warn("labkit: precaching failed", err)));
});
