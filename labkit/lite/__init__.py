"""``labkit lite build``: the course in replay as a static JupyterLite site.

``site``     the site: lessons, the labkit wheel, Graphviz in WebAssembly
``pyodide``  the site's own Pyodide and the wheels it carries
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "site": "build",
})
