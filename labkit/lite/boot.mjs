// The site's Pyodide entry point (the kernel's pyodideUrl, labkit.lite.site): Pyodide's own
// loadPyodide, then the kernel's start-up imports (pyodide_kernel, piplite) at once, before the
// kernel's worker mounts the notebook's folder at /drive and makes it the current folder. Imported
// after that, each of the some 600 modules first looked in the current folder ("" leads sys.path):
// a call from the worker through the service worker to the page and back, ~120 of them. Imported
// here, in Pyodide's own files, none. The worker's own imports then find them imported: the same
// modules, made the same way (nothing in them looks at the current folder).
import { loadPyodide as load, version } from "./pyodide.mjs";

export { version };

export async function loadPyodide(options) {
  const py = await load(options);
  const packages = options.packages || [];
  if (packages.includes("pyodide-kernel")) py.runPython("import pyodide_kernel");
  if (packages.includes("piplite")) py.runPython("import piplite.piplite");
  return py;
}
