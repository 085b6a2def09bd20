"""Sphinx configuration for the vvuq_twin documentation.

Build (what ``.ci/run`` and the README run)::

    pip install -c constraints.txt -e ".[docs]"
    sphinx-build -W --keep-going -n docs docs/_build/html

* API reference: ``docs/_ext/vvuq_apigen.py`` writes ``docs/api/`` (one page per name in every
  public module's ``__all__``) when the build starts; the folder is generated, not edited.
* Tutorials are MyST-NB text notebooks executed at build time, cached by jupyter-cache
  (``nb_execution_mode = "cache"``): an unchanged notebook is not re-run.
* Intersphinx without network: inventories are read from ``docs/_intersphinx/<name>.inv`` when
  such a file exists (none is shipped: the projects' ``objects.inv`` files cannot be built or
  downloaded offline). Set ``VVUQ_DOCS_INTERSPHINX=online`` to fetch them from the projects'
  sites instead. A project without an inventory is skipped - no network access is attempted -
  and references into it render as plain code through ``nitpick_ignore_regex`` below, so
  ``-n -W`` stays clean either way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
# notebook kernels import the package from this checkout, too
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
# notebook kernels inherit the environment: MPLBACKEND=Agg (common in CI) would replace
# matplotlib's inline backend and the executed tutorials would lose their figures
if os.environ.get("MPLBACKEND", "").lower() == "agg":
    del os.environ["MPLBACKEND"]

import vvuq_apigen  # noqa: E402

import vvuq_twin  # noqa: E402

project = "vvuq_twin"
author = "vvuq_twin developers"
copyright = "2026, vvuq_twin developers"
release = version = vvuq_twin.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
    "vvuq_cases",   # case-study pages show their report's figures (docs/_ext/vvuq_cases.py)
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "_templates",
                    "case-studies/_generated"]   # included by the case pages (vvuq_cases)
templates_path = ["_templates"]
root_doc = "index"
nitpicky = True
# myst.header: docs/ARCHITECTURE.md (edited outside the docs) may skip heading levels
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

# ---- autodoc / numpydoc (vvuq_apigen writes the API pages) -------------------------------------------------------

autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"exclude-members": "__init__, __new__"}
add_module_names = False
numpydoc_show_class_members = False   # members are documented by autoclass :members:
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"          # link only the aliases below and dotted names
numpydoc_xref_aliases = {
    "Twin": "vvuq_twin.twin.Twin",
    "TwinData": "vvuq_twin.twin.TwinData",
    "TwinResult": "vvuq_twin.inference.TwinResult",
    "Ledger": "vvuq_twin.inference.Ledger",
    "Diagnostics": "vvuq_twin.inference.Diagnostics",
}

# ---- intersphinx: local inventories only, unless asked to go online ------------------------
_PROJECTS = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "scipy": "https://docs.scipy.org/doc/scipy",
    "xarray": "https://docs.xarray.dev/en/stable",
    "arviz": "https://python.arviz.org/en/stable",
    "pymc": "https://www.pymc.io/projects/docs/en/stable",
    "pytensor": "https://pytensor.readthedocs.io/en/latest",
    "SALib": "https://salib.readthedocs.io/en/latest",
    "botorch": "https://botorch.org/api",
    "pandas": "https://pandas.pydata.org/docs",
    "matplotlib": "https://matplotlib.org/stable",
    "dask": "https://docs.dask.org/en/stable",
    "distributed": "https://distributed.dask.org/en/stable",
}
_ONLINE = os.environ.get("VVUQ_DOCS_INTERSPHINX", "").lower() == "online"
intersphinx_mapping = {}
for _name, _url in _PROJECTS.items():
    _inv = DOCS / "_intersphinx" / f"{_name}.inv"
    if _inv.exists():
        intersphinx_mapping[_name] = (_url, str(_inv))
    elif _ONLINE:
        intersphinx_mapping[_name] = (_url, None)
intersphinx_disabled_reftypes = ["*"]   # only explicit ``project:`` or resolvable targets
intersphinx_timeout = 10

# references into projects without an inventory (and typing constructs) stay plain text
_EXTERNAL = [
    "numpy", "np", "npt", "numpy.typing", "scipy", "xarray", "xr", "arviz", "az", "pymc", "pm",
    "pytensor", "pt", "SALib", "botorch", "torch", "gpytorch", "chaospy", "pandas", "pd", "dask",
    "distributed", "matplotlib", "mpl", "plt", "sympy", "concurrent", "pathlib", "collections",
    "typing", "typing_extensions", "datetime", "os", "enum", "dataclasses", "abc", "io",
    "numbers", "types", "json", "tomllib", "argparse", "logging", "tqdm", "threadpoolctl",
    "h5netcdf", "nutpie", "fair", "xml", "functools", "contextlib", "random", "warnings",
    "builtins", "re", "subprocess", "hashlib", "zipfile", "_pytest", "pytest",
]
_ext_re = "|".join(_EXTERNAL).replace(".", r"\.")
nitpick_ignore_regex = [
    (r"py:.*", rf"({_ext_re})(\..*)?"),
    # plain-language types in numpydoc "Parameters" sections
    (r"py:.*", r"(array[-_ ]like|array|ndarray|callable|Callable|iterable|sequence|mapping|"
               r"scalar|path[-_ ]like|PathLike|file[-_ ]like|optional|default|"
               r"Generator|SeedSequence|Executor|Future|Dataset|DataArray|InferenceData|"
               r"Model|TensorVariable|Variable|Figure|Axes|Tensor|DataFrame|Series|Path|"
               r"ArrayLike|NDArray|Any|Self|Literal|Sequence|Mapping|Iterable|Iterator|"
               r"TypeAlias|TypeVar|Protocol|Union|Optional|ClassVar|Final|Hashable)"),
    # numpydoc's default aliases point into the Python and NumPy inventories
    (r".*", r"(python|numpy|scipy|matplotlib):.*"),
    (r"py:.*", r"RNGLike|dtype|zeros|empty"),
    # composite numpydoc types ("A | Mapping[str, ndarray]") and pytest internals (the plugin)
    (r"py:.*", r".*[|\[\]].*"),
    (r"py:.*", r"Config|Session"),
    (r"std:ref", r"non-python tests"),
    # bare instance attributes set in __init__ (AssimilationRun.rejected, ParticlePosterior.reports),
    # documented in prose: autodoc cannot see them
    (r"py:attr", r"[a-z_]+"),
    # private helpers that public signatures mention
    (r"py:.*", r"vvuq_twin\.(.*\.)?_.*"),
]

# ---- MyST / MyST-NB -------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("VVUQ_DOCS_EXECUTE", "cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True     # a tutorial that fails to run fails the build
nb_execution_show_tb = True
nb_execution_excludepatterns = ["how-to/*", "explanation/*", "case-studies/*"]
nb_merge_streams = True

# ---- HTML -----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "vvuq_twin"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
# without a default mode the theme's script logs "Got invalid theme mode" on a first visit
html_context = {"default_mode": "light"}


# ---- generated API pages and reference redirects --------------------------------------------
_ALIAS: dict[str, str] = {}
_CANON: dict[int, str] = {}
_SHORT: dict[str, str] = {}


def _generate_api(app) -> None:
    vvuq_apigen.write(DOCS / "api")
    _, alias, canon = vvuq_apigen.collect()
    _ALIAS.update(alias)
    _CANON.update(canon)
    counts: dict[str, int] = {}
    for full in set(alias.values()):
        short = full.rsplit(".", 1)[-1]
        counts[short] = counts.get(short, 0) + 1
        _SHORT[short] = full
    for short, n in counts.items():
        if n > 1:
            del _SHORT[short]          # ambiguous: QoI, evsi, ... need their module


_PLAIN: set[str] = set()


def _missing_reference(app, env, node, contnode):
    """Point references at the one page of an object, whatever path names it.

    A reference to a name of this project that exists but has no page (a module constant or
    helper outside every ``__all__``, e.g. ``GENESIS``) renders as plain code and is listed in
    the build log; a reference to a name that does not exist still fails the nitpicky build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    mod = node.get("py:module") or ""
    cls = node.get("py:class") or ""
    candidates = [target]
    if mod and not target.startswith(vvuq_apigen.ROOT_PACKAGE):
        if cls:
            candidates.append(f"{mod}.{cls}.{target}")
        candidates.append(f"{mod}.{target}")
        # names relative to the module that defines the documented object
        doc = node.get("refdoc", "")
        if doc.startswith("api/generated/"):
            home = vvuq_apigen.defining_module(doc.rsplit("/", 1)[1])
            if home and home != mod:
                candidates.append(f"{home}.{target}")
    candidates.append(f"{vvuq_apigen.ROOT_PACKAGE}.{target}")
    names = [n for c in candidates for n in vvuq_apigen.canonical_names(c, _ALIAS, _CANON)]
    if "." not in target and target in _SHORT:
        names.append(_SHORT[target])
    domain = env.get_domain("py")
    for canonical in dict.fromkeys(names):
        new = node.deepcopy()
        new["reftarget"] = canonical
        new["refspecific"] = False
        found = domain.resolve_any_xref(env, node["refdoc"], app.builder, canonical, new, contnode)
        if found:
            return found[0][1]
    for cand in candidates:
        if vvuq_apigen.exists(cand):
            _PLAIN.add(cand)
            return contnode
    return None


def _report_plain(app, exc) -> None:
    if _PLAIN:
        from sphinx.util import logging
        logging.getLogger(__name__).info(
            "%d references to existing names without an API page rendered as plain code: %s",
            len(_PLAIN), ", ".join(sorted(_PLAIN)))


def setup(app):
    app.connect("builder-inited", _generate_api)
    app.connect("missing-reference", _missing_reference)
    app.connect("build-finished", _report_plain)
    return {"parallel_read_safe": True}
