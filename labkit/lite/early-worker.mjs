// labkit (labkit.lite.early): the Pyodide kernel's worker, started with the page. The kernel's own
// worker script (imported below: it answers the kernel as before) with Pyodide and the kernel's
// packages already starting (boot.mjs's prestart), as the kernel will ask for them.
import { prestart } from "__BOOT__";
import "./__KERNEL_WORKER__";

prestart({ indexURL: new URL("__INDEX_URL__", import.meta.url).href, packages: __PACKAGES__ })
  .then(() => postMessage({ labkit: "ready" }), () => {}); // the page then precaches (early-page.js)
