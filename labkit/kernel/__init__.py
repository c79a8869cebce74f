"""Build the lab kernel and find it again.

The recipe, each step named in progress and in errors:

1. ``source``: Debian's ``linux-source-6.12`` tarball (installed with apt
   when missing and we are root).
2. ``unpack``: into ``<cache>/kernel/<key>/src``.
3. ``patch``: the series in ``kernel/series`` (``kernel/patches/*.patch``).
4. ``configure``: ``tinyconfig`` + ``kvm_guest.config`` + ``kernel/lab.config``,
   then a check that every option the fragment asks for made it.
5. ``build``: ``make vmlinux`` out of tree, with BTF.
6. ``export``: ``out/vmlinux`` (debug info stripped, BTF kept), ``out/vmlinux.h``
   from ``bpftool btf dump`` and ``out/build.json``.

The cache key is a hash of the source package version, the patches in
series order, the config fragment and this recipe's version, so a second
call with nothing changed returns at once (``<cache>/kernel/<key>/out``).
The source tree and build directory live at one fixed path per source
version (``<cache>/kernel/work/<version hash>``); when the key changes (a
patch was edited), the old patches are reversed, the new ones applied, and
make rebuilds only what they touch.

A kernel built elsewhere comes in as one file (``labkit kernel import``,
``labkit.kernel.pack``) into the user's cache or a shared read-only
location, where ``kernel_path()`` finds it too.

The modules:

``cache``   the recipe's inputs, the cache key, the identity of a kernel for this checkout,
            ``kernel_path()``
``build``   the build steps (``Builder``, ``build()``)
``pack``    a built kernel as one file (``labkit kernel export`` / ``import``)
``splats``  kernel splats (KASAN, lockdep, WARN, oops) in the guest's log
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "build": "Builder ensure_source patched_files",
    "cache": "RECIPE_VERSION SHARED_KERNELS SOURCE_PACKAGE SOURCE_TARBALL cache_key config_id current_key find "
             "fragment_bytes fragment_options identity info kernel_path kernel_root matching missing_options "
             "series series_id shared_root source_tarball source_version",
})
