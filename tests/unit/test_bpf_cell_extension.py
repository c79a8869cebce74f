"""The JupyterLab extension that highlights %%bpf cells as C, run in node
against stand-ins for JupyterLab's shared modules: the container interface
JupyterLab loads it through, and which cells become C from which offset."""

import json
import shutil
import subprocess

from labkit import paths
from tests.conftest import need

ENTRY = paths.PROJECT / "labkit/jupyter_config/labextensions/labkit-bpf-cell/static/remoteEntry.js"

HARNESS = r"""
const fs = require("fs");
global.window = {};
eval(fs.readFileSync(process.argv[1], "utf8"));
const TOKEN = {name: "@jupyterlab/codemirror:IEditorLanguageRegistry"};
let wrapper = null;
const mod = m => ({"1.0.0": {loaded: true, get: () => Promise.resolve(() => m)}});
const scope = {
  "@jupyterlab/codemirror": mod({IEditorLanguageRegistry: TOKEN}),
  "@lezer/common": mod({parseMixed: f => (wrapper = f)}),
  "@codemirror/language": mod({LanguageSupport: function (language, support) {
    this.language = language; this.support = support; }}),
};
const py = {language: {configure: (opts, name) => ({wrapped: opts.wrap, name})}, support: []};
const c = {language: {parser: "C-PARSER"}, support: []};
const spec = {load: () => Promise.resolve(py), support: py};
const registry = {findByName: n => (n === "ipython" ? spec : null),
                  getLanguage: n => Promise.resolve(n === "c" ? {support: c} : null)};
(async () => {
  const ext = window._JUPYTERLAB["labkit-bpf-cell"];
  await ext.init(scope);
  const module = (await ext.get("./extension"))();
  const plugin = module.default[0];
  plugin.activate({}, registry);
  const support = await spec.load();
  const top = {type: {isTop: true}}, inner = {type: {isTop: false}};
  const cells = JSON.parse(process.argv[2]);
  const out = {requires: plugin.requires[0] === TOKEN, esModule: module.__esModule, reset: spec.support === undefined,
               name: support.language.name, inner: wrapper(inner, {read: () => cells[0], length: cells[0].length})};
  out.cells = cells.map(t => {
    const r = wrapper(top, {read: (a, b) => t.slice(a, b), length: t.length});
    return r && {parser: r.parser, from: r.overlay[0].from, to: r.overlay[0].to};
  });
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""

CELLS = ["%%bpf stamp --run basic\nint x;\n", "\n  \n%%bpf fixme\n#include \"lab_user.h\"\n", "print('%%bpf')\n",
         "%%bpfx\nint x;\n", "%%bpf only", "# %%bpf stamp\nint x;\n"]


def test_bpf_cells_are_c_below_the_magic_line():
    node = shutil.which("node")
    need(node is not None, "this test runs the extension in node", "sudo apt-get install nodejs")
    res = subprocess.run([node, "-e", HARNESS, str(ENTRY), json.dumps(CELLS)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["requires"] and out["esModule"] and out["reset"] and out["name"] == "ipython"
    assert out["inner"] is None  # only the whole cell is looked at
    first, blank_lines_first, python, other_magic, no_body, comment = out["cells"]
    assert first == {"parser": "C-PARSER", "from": len("%%bpf stamp --run basic\n"), "to": len(CELLS[0])}
    assert blank_lines_first["from"] == len("\n  \n%%bpf fixme\n")
    assert python is None and other_magic is None and no_body is None and comment is None
