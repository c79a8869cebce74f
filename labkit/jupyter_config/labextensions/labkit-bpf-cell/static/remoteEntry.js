/* labkit-bpf-cell: a JupyterLab 4 extension, written by hand (no npm, no build).
 *
 * JupyterLab highlights every code cell with the kernel's language (IPython,
 * i.e. Python), so the C of a %%bpf cell comes out as Python: an apostrophe in
 * a comment opens a string that runs to the end of the cell. JupyterLab 4 has
 * no setting mapping a cell magic to a language (jupyterlab/jupyterlab#15324).
 *
 * This plugin wraps the "ipython" language's parser (lezer parseMixed): when
 * a cell's first non-blank line is %%bpf, the lines below it are parsed,
 * highlighted, indented and commented (Ctrl-/) as C, with the C language
 * JupyterLab already ships; every other cell stays IPython.
 *
 * A prebuilt JupyterLab extension is a webpack module-federation container:
 * the page loads this script, calls init(shareScope) and get("./extension").
 * That interface is written out here directly; the modules it needs are
 * JupyterLab's own shared singletons (@jupyterlab/codemirror, @lezer/common,
 * @codemirror/language), taken from the share scope.
 */
(function () {
  "use strict";
  var NAME = "labkit-bpf-cell";
  var MAGIC = /^(?:[ \t]*\r?\n)*[ \t]*%%bpf\b[^\n]*(?:\n|$)/;
  var shareScope = null;

  function shared(pkg) {
    var versions = shareScope && shareScope[pkg];
    if (!versions) {
      return Promise.reject(new Error(NAME + ": JupyterLab shares no " + pkg));
    }
    var keys = Object.keys(versions);
    // The copy JupyterLab itself uses: the one already loaded, else the core's.
    var key = keys.filter(function (k) { return versions[k].loaded; })[0] ||
      keys.filter(function (k) { return versions[k].from === "@jupyterlab/application-top"; })[0] ||
      keys[0];
    return Promise.resolve(versions[key].get()).then(function (factory) { return factory(); });
  }

  function bpfCellLanguage(registry, lezer, cmlang) {
    var spec = registry.findByName("ipython");
    if (!spec) {
      console.warn(NAME + ": no ipython language to extend");
      return;
    }
    var plainLoad = spec.load.bind(spec);
    var loading = null;
    spec.load = function () {
      loading = loading || Promise.all([plainLoad(), registry.getLanguage("c")]).then(function (r) {
        var py = r[0], c = r[1] && r[1].support;
        if (!c) {
          return py;
        }
        var wrap = lezer.parseMixed(function (node, input) {
          if (!node.type.isTop) {
            return null;
          }
          var m = MAGIC.exec(input.read(0, Math.min(input.length, 2000)));
          if (!m || m[0].length >= input.length) {
            return null;
          }
          return { parser: c.language.parser, overlay: [{ from: m[0].length, to: input.length }] };
        });
        var lang = py.language.configure({ wrap: wrap }, "ipython");
        return new cmlang.LanguageSupport(lang, [py.support, c.support]);
      });
      return loading;
    };
    spec.support = undefined;  // load again, through the wrapper, if anything loaded it already
  }

  var modules = null;
  function load() {
    modules = modules || Promise.all([shared("@jupyterlab/codemirror"), shared("@lezer/common"),
                                      shared("@codemirror/language")]);
    return modules;
  }

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = {
    init: function (scope) {
      shareScope = scope;
      return Promise.resolve();
    },
    get: function (module) {
      if (module !== "./extension") {
        return Promise.reject(new Error(NAME + " has no module " + module));
      }
      return load().then(function (m) {
        var cm = m[0], lezer = m[1], cmlang = m[2];
        var plugin = {
          id: NAME + ":plugin",
          description: "Highlights %%bpf cells as C.",
          autoStart: true,
          requires: [cm.IEditorLanguageRegistry],
          activate: function (app, registry) {
            bpfCellLanguage(registry, lezer, cmlang);
          }
        };
        return function () { return { __esModule: true, default: [plugin] }; };
      });
    }
  };
})();
