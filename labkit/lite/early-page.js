// labkit (labkit.lite.early): the lesson's kernel starts with the page, not after JupyterLab.
// JupyterLab takes seconds to start before it creates the Pyodide kernel's worker, which then
// takes seconds to load Pyodide and the kernel's packages. Here that worker is created at once
// (early-worker.mjs: the kernel's own worker script, Pyodide already loading); the first time
// JupyterLab creates the kernel's worker it gets this one. Unclaimed after a minute (no notebook
// opened), it ends.
//
// On a first visit the site's service worker (labkit.lite.serviceworker, JupyterLite's) is
// registered here, before JupyterLab would, and the kernel's worker created once it controls the
// page: the worker's files then come through the site's cache, and Pyodide's wasm with them,
// where the browser keeps the machine code it compiles it to for the next visit. Once the kernel
// is up, the scripts this page loaded are handed to the precaching service worker (registered for
// a scope with no pages: precache-worker.js), which puts them in that cache with their compiled
// code, for the next visit to run at once.
(() => {
  if (!("Worker" in self) || self.crossOriginIsolated) return; // cross-origin isolated: another worker
  const KERNEL_WORKER = new URL("__KERNEL_WORKER_URL__", document.baseURI).href;
  const Native = self.Worker;
  let early = null;
  let claimed = false;
  let ready = false; // the early worker's Pyodide is up
  const precache = async () => {
    const sw = navigator.serviceWorker;
    if (!sw?.controller || !self.caches) return;
    const scripts = performance.getEntriesByType("resource")
      .filter((e) => e.initiatorType === "script" && new URL(e.name).origin === location.origin)
      .map((e) => e.name);
    const scope = new URL("__PRECACHE_SCOPE__", document.baseURI);
    const lists = await caches.open("labkit-precache");
    await lists.put(new URL("precache.json", scope), new Response(JSON.stringify(scripts)));
    await sw.register(new URL("__PRECACHE_WORKER_URL__", document.baseURI), { scope });
  };
  let precaching = false;
  const kernelUp = () => {
    if (!ready || !claimed || precaching) return;
    precaching = true;
    const idle = self.requestIdleCallback ?? ((f) => setTimeout(f, 0));
    const run = () => precache().catch((err) => console.warn("labkit: could not precache", err));
    setTimeout(() => idle(run, { timeout: 2000 }), 1000); // after the kernel's first replies
  };
  const start = () => {
    if (claimed || early !== null) return;
    early = new Native(new URL("__EARLY_WORKER_URL__", document.baseURI), { type: "module" });
    early.addEventListener("message", (e) => {
      if (e.data?.labkit === "ready") { ready = true; kernelUp(); }
    });
    setTimeout(() => { early?.terminate(); early = null; }, 60000); // unclaimed
  };
  self.Worker = new Proxy(Native, {
    construct(target, args, newTarget) {
      if (!claimed && new URL(args[0], document.baseURI).href === KERNEL_WORKER) {
        claimed = true;
        if (early !== null) {
          const worker = early;
          early = null;
          kernelUp();
          return worker;
        }
      }
      return Reflect.construct(target, args, newTarget);
    },
  });
  const sw = navigator.serviceWorker;
  if (!sw || sw.controller) {
    start();
    return;
  }
  sw.addEventListener("controllerchange", start, { once: true });
  setTimeout(start, 3000); // no service worker in time: the kernel's files from the server
  sw.register(new URL("__SERVICE_WORKER_URL__", document.baseURI)).catch(start);
})();
