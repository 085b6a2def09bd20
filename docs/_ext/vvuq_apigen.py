"""Generate the API reference: one page per public name, from every public module's ``__all__``.

Every module of :mod:`vvuq_twin` whose dotted path has no component starting with ``_`` (and is
not ``__main__``) is *public*. Each object named in a public module's ``__all__`` gets exactly one
page, under the first public module that exports it, in this order: subpackages (shallow first),
then plain modules. Later modules that re-export the same object list it with a link to that page,
so every name in every ``__all__`` resolves to a page and no object is documented twice (Sphinx
would warn about duplicate descriptions). The top-level :mod:`vvuq_twin` namespace lists its
re-exports the same way.

The canonical map (object -> documented dotted name) also resolves references Sphinx cannot find
on its own: type hints name the defining module (``vvuq_twin.twin.declaration.Twin``) and
docstrings name the top level (``vvuq_twin.Twin``); :func:`resolve_missing` redirects both to the
page. Used by ``docs/conf.py`` and by ``tests/docs/test_api_coverage.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT_PACKAGE = "vvuq_twin"
# modules with an __all__ that are not part of the user-facing API
SKIP_MODULES = {"vvuq_twin.__main__", "vvuq_twin.cli"}


@dataclass
class ApiModule:
    name: str
    is_package: bool
    summary: str
    own: list[str] = field(default_factory=list)      # names documented on this module's page
    linked: list[tuple[str, str]] = field(default_factory=list)  # (name, canonical dotted name)


def _public(name: str) -> bool:
    return name not in SKIP_MODULES and not any(p.startswith("_") for p in name.split(".")[1:])


def public_modules() -> list[str]:
    """Dotted names of the public modules that define an ``__all__``, in documentation order."""
    pkg = importlib.import_module(ROOT_PACKAGE)
    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, ROOT_PACKAGE + ".")
             if _public(m.name)]
    found = []
    for name in names:
        mod = importlib.import_module(name)
        if getattr(mod, "__all__", None) is not None:
            found.append((not hasattr(mod, "__path__"), name.count("."), name))
    return [n for _, _, n in sorted(found)]


def collect() -> tuple[list[ApiModule], dict[str, str], dict[int, str]]:
    """Return (modules, every dotted name -> canonical dotted name, id(obj) -> canonical)."""
    modules: list[ApiModule] = []
    canonical_of_obj: dict[int, str] = {}
    alias: dict[str, str] = {}
    for modname in public_modules():
        mod = importlib.import_module(modname)
        doc = inspect.getdoc(mod) or ""
        entry = ApiModule(modname, hasattr(mod, "__path__"), doc.split("\n\n")[0].replace("\n", " "))
        for name in mod.__all__:
            obj = getattr(mod, name)
            full = f"{modname}.{name}"
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                # data (constants, mappings) is identified by module + name, not by value
                alias[full] = full
                entry.own.append(name)
                continue
            key = id(obj)
            if key in canonical_of_obj:
                alias[full] = canonical_of_obj[key]
                entry.linked.append((name, canonical_of_obj[key]))
            else:
                canonical_of_obj[key] = full
                alias[full] = full
                entry.own.append(name)
        modules.append(entry)
    # the top-level namespace re-exports names of subpackages (lazily)
    top = importlib.import_module(ROOT_PACKAGE)
    for name in top.__all__:
        obj = getattr(top, name)
        if name == "__version__":
            continue
        if id(obj) in canonical_of_obj:
            alias[f"{ROOT_PACKAGE}.{name}"] = canonical_of_obj[id(obj)]
    return modules, alias, canonical_of_obj


def canonical_name(target: str, alias: dict[str, str],
                   canonical_of_obj: dict[int, str]) -> str | None:
    """The documented dotted name of the object ``target`` names, or None.

    Data (constants) resolve by name only; classes and functions by identity, so a name from
    the defining module, a private module or the top level finds the one page. A method or
    attribute resolves through its class (``vvuq_twin.twin.declaration.Twin.build`` ->
    ``vvuq_twin.twin.Twin.build``); only targets that exist are resolved.
    """
    names = canonical_names(target, alias, canonical_of_obj)
    return names[0] if names else None


def canonical_names(target: str, alias: dict[str, str],
                    canonical_of_obj: dict[int, str]) -> list[str]:
    """All documented names ``target`` may resolve to, best first (see :func:`canonical_name`).

    An inherited method also resolves to the class that defines it
    (``Gaussian.noise_values`` -> ``ObservationModel.noise_values``).
    """
    if target in alias:
        return [alias[target]]
    parts = target.split(".")
    if not parts or parts[0] != ROOT_PACKAGE:
        return []
    out: list[str] = []
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        rest = parts[cut:]
        try:
            head = getattr(obj, rest[0])
            leaf = head
            for p in rest[1:]:
                leaf = getattr(leaf, p)
        except AttributeError:
            return []
        base = canonical_of_obj.get(id(head))
        if base is not None:
            out.append(".".join([base, *rest[1:]]))
        qual = getattr(leaf, "__qualname__", "")
        mod = getattr(leaf, "__module__", None)
        if len(rest) > 1 and mod and "." in qual and "<" not in qual:
            try:
                owner = importlib.import_module(mod)
                for p in qual.split(".")[:-1]:
                    owner = getattr(owner, p)
                owner_name = canonical_of_obj.get(id(owner))
                if owner_name:
                    out.append(f"{owner_name}.{qual.rsplit('.', 1)[1]}")
            except Exception:
                pass
        return out
    return out


def defining_module(fullname: str) -> str | None:
    """The module that defines the object documented as ``fullname`` (for relative names)."""
    parts = fullname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        try:
            for p in parts[cut:]:
                obj = getattr(obj, p)
        except AttributeError:
            return None
        return getattr(obj, "__module__", None)
    return None


def _project(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in (ROOT_PACKAGE, "case_studies")


def exists(target: str) -> bool:
    """Whether ``target`` names a module, class, function, constant or field of this project.

    Names imported into a project module from elsewhere (``typing.Any``, ``torch.Tensor``) do
    not count; a dataclass field without a default (only in ``__annotations__``) does.
    """
    parts = target.split(".")
    if not _project(parts[0]):
        return False
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        for p in parts[cut:]:
            if hasattr(obj, p):
                obj = getattr(obj, p)
            elif inspect.isclass(obj) and any(p in getattr(k, "__annotations__", {}) for k in obj.__mro__):
                return _project(obj.__module__)      # an annotated field (dataclass)
            else:
                return False
        if inspect.ismodule(obj):
            return _project(obj.__name__)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            return _project(getattr(obj, "__module__", None))
        return True                                  # a constant defined in a project module
    return False


def _directive(obj) -> str:
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "autofunction"
    return "autodata"


def _summary(obj) -> str:
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return "(constant)"
    doc = inspect.getdoc(obj) or ""
    text = " ".join(doc.split("\n\n")[0].split()) or "(no docstring)"
    # a method named without its class resolves on the class page only
    return re.sub(r":(?:meth|attr):`~?([A-Za-z_]\w*)`", r"``\1``", text)


def _title(text: str, ch: str) -> str:
    return f"{text}\n{ch * len(text)}\n"


def write(outdir: Path) -> list[Path]:
    """Write ``outdir/index.rst``, one page per module and ``outdir/generated/<name>.rst``."""
    modules, alias, _ = collect()
    gen = outdir / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(path: Path, text: str) -> None:
        # rewrite only on change so Sphinx rebuilds only what changed
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)

    for m in modules:
        mod = importlib.import_module(m.name)
        for name in m.own:
            obj = getattr(mod, name)
            d = _directive(obj)
            head = _title(f"{m.name}.{name}", "=") + f"\n.. currentmodule:: {m.name}\n\n"
            if d == "autodata":
                # autodoc would show the docstring of the value's type (ndarray, dict, ...)
                value = repr(obj).replace("`", "'")
                value = value if len(value) <= 300 else value[:300] + " ..."
                body = (f".. py:data:: {name}\n\n   A constant of type ``{type(obj).__name__}``.\n\n"
                        f"   .. code-block:: text\n\n      " + value.replace("\n", "\n      ") + "\n")
            else:
                opts = ("   :members:\n   :undoc-members:\n   :show-inheritance:\n"
                        if d in ("autoclass", "autoexception") else "")
                body = f".. {d}:: {name}\n{opts}"
            put(gen / f"{m.name}.{name}.rst", head + body)
        parent, _, last = m.name.rpartition(".")
        # a submodule shadowed by a function of the same name (inference.calibrate) gets no
        # py:module target, so the function keeps the dotted name
        shadowed = getattr(importlib.import_module(parent), last, mod) is not mod
        noindex = "   :no-index:\n" if shadowed else ""
        lines = [_title(f"``{m.name}``", "="),
                 f".. automodule:: {m.name}\n   :no-members:\n{noindex}"]
        if m.own:
            lines.append(".. currentmodule:: " + m.name + "\n")
            # own summary table: autosummary cuts the summary at the first ". ", which breaks
            # inline literals such as ``beta . x``; the first docstring paragraph is kept whole
            rows = "".join(f"   * - :py:obj:`{n} <{m.name}.{n}>`\n     - {_summary(getattr(mod, n))}\n"
                           for n in m.own)
            lines.append(".. list-table::\n   :widths: 30 70\n   :class: vvuq-api-summary\n\n" + rows)
            lines.append(".. toctree::\n   :hidden:\n\n"
                         + "".join(f"   generated/{m.name}.{n}\n" for n in m.own))
        if m.linked:
            lines.append(_title("Also exported here", "-"))
            lines.append("".join(f"* ``{m.name}.{n}`` is :py:obj:`{c}`\n" for n, c in m.linked))
        put(outdir / f"{m.name}.rst", "\n".join(lines))

    top = importlib.import_module(ROOT_PACKAGE)
    top_lines = [_title(f"``{ROOT_PACKAGE}`` (top level)", "="),
                 f".. automodule:: {ROOT_PACKAGE}\n   :no-members:\n",
                 "The top-level namespace re-exports the names most twins need "
                 "(``import vvuq_twin as vt; vt.Twin``); each is documented once, "
                 "in its subpackage:\n"]
    top_lines.append("".join(f"* ``vt.{n}`` is :py:obj:`{alias[ROOT_PACKAGE + '.' + n]}`\n"
                             for n in top.__all__ if n != "__version__"))
    put(outdir / f"{ROOT_PACKAGE}.rst", "\n".join(top_lines))

    pk = [m for m in modules if m.is_package]
    md = [m for m in modules if not m.is_package]
    idx = [_title("API reference", "="),
           "Every public name of every subpackage (each name in a module's ``__all__``) has a page. "
           "Start with the top level and :mod:`vvuq_twin.twin` (the declaration) and "
           ":mod:`vvuq_twin.inference` (calibrate, predict, results).\n",
           ".. toctree::\n   :maxdepth: 1\n   :caption: Top level and subpackages\n\n"
           f"   {ROOT_PACKAGE}\n" + "".join(f"   {m.name}\n" for m in pk),
           ".. toctree::\n   :maxdepth: 1\n   :caption: Modules\n\n"
           + "".join(f"   {m.name}\n" for m in md)]
    put(outdir / "index.rst", "\n".join(idx))
    # remove stale pages of names that left an __all__
    keep = set(written)
    for p in list(gen.glob("*.rst")) + list(outdir.glob("*.rst")):
        if p not in keep:
            p.unlink()
    return written


def missing_pages(outdir: Path) -> list[str]:
    """Names in a public module's ``__all__`` (or the top level's) without a page in ``outdir``.

    A name is covered when its canonical page ``outdir/generated/<canonical>.rst`` exists and,
    for a re-export, the exporting module's page links to it.
    """
    modules, alias, _ = collect()
    gen = Path(outdir) / "generated"
    missing = []
    top = importlib.import_module(ROOT_PACKAGE)
    names = [(m.name, n) for m in modules for n in importlib.import_module(m.name).__all__]
    names += [(ROOT_PACKAGE, n) for n in top.__all__ if n != "__version__"]
    for modname, n in names:
        full = f"{modname}.{n}"
        canonical = alias.get(full)
        page = Path(outdir) / f"{modname}.rst"
        if canonical is None or not (gen / f"{canonical}.rst").exists():
            missing.append(full)
        elif canonical != full and (not page.exists() or f"`{canonical}`" not in page.read_text()):
            missing.append(full)
    return missing
