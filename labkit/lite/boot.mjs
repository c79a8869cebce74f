// The site's Pyodide entry point (the kernel's pyodideUrl, labkit.lite.site): Pyodide's own
// loadPyodide, then the kernel's start-up imports (pyodide_kernel, piplite) at once, before the
// kernel's worker mounts the notebook's folder at /drive and makes it the current folder. Imported
// after that, each of the some 600 modules first looked in the current folder ("" leads sys.path):
// a call from the worker through the service worker to the page and back, ~120 of them. Imported
// here, in Pyodide's own files, none. The worker's own imports then find them imported: the same
// modules, made the same way (nothing in them looks at the current folder).
//
// prestart(): the kernel's worker is created with the page (labkit.lite.early) and starts all that
// at once, while JupyterLab starts; the kernel's own loadPyodide call, seconds later, gets that
// Pyodide when it asks for the same one (same folder, same packages), with its stdout and stderr.
import { loadPyodide as load, version } from "./pyodide.mjs";

export { version };

let early = null; // { key, promise }: the Pyodide prestart began

const key = (options) => JSON.stringify([options.indexURL, options.packages || []]);

async function start(options) {
  const py = await load(options);
  const packages = options.packages || [];
  if (packages.includes("pyodide-kernel")) py.runPython("import pyodide_kernel");
  if (packages.includes("piplite")) py.runPython("import piplite.piplite");
  return py;
}

export function prestart(options) {
  if (early === null) {
    early = { key: key(options), promise: start(options) };
    early.promise.catch(() => {}); // reported when the kernel asks for it
  }
  return early.promise;
}

export async function loadPyodide(options) {
  if (early !== null && early.key === key(options)) {
    const { promise } = early;
    early = null; // one kernel's: a restart starts afresh
    try {
      const py = await promise;
      if (options.stdout) py.setStdout({ batched: options.stdout });
      if (options.stderr) py.setStderr({ batched: options.stderr });
      return py;
    } catch (err) {
      console.warn("labkit: the kernel's early start failed, starting it again", err);
    }
  }
  return start(options);
}
