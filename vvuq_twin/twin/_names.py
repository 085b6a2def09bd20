"""Names the model builder creates, derived from the builder itself (not a hand-kept list).

:func:`check_parameter_names` builds the twin's PyMC model - for calibration, for the
posterior-predictive form and for prediction at new inputs and a new unit - on a three-row probe
data set with a stand-in simulator (the real simulator is not run; the builder's names do not
depend on it). A parameter whose name the builder also creates (``sigma_rel``, ``nu_obs``,
``y_observed``, ``eta_new``, ``<name>_mu`` beside a per-unit ``<name>``, a discrepancy
hyperparameter ...) then fails at declaration with a :class:`TwinSpecificationError` naming the
clash, instead of PyMC's "Variable name already exists" when the model is first built.

The probe builds cost a few tenths of a second per declaration, paid at every ``Twin(...)``.
Their result depends only on the declaration and on the builder's code, so it is kept in
memory (by declaration hash) and on disk, beside the compile cache (``names-<key>.json`` in
``$VVUQ_TWIN_CACHE_DIR``, default ``~/.cache/vvuq_twin/compiled``), under a key made of the
declaration hash, a hash of the source of :mod:`vvuq_twin.twin` (the builder), of any component
class defined elsewhere (a user's own discrepancy or observation model) and the PyMC and
PyTensor versions. A new process declaring the same twin reads the names instead of building
(``VVUQ_TWIN_COMPILE_CACHE=0`` switches the disk part off). Only declarations that pass the
check are stored; a clash is always found by building.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytensor.tensor as pt

from .._io import cache_dir, cache_enabled
from ..exceptions import TwinSpecificationError
from ._spec import PredictSpec
from .simulators import Simulator

__all__ = ["builder_names", "builder_stamp", "cache_dir", "check_parameter_names"]

_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("vvuq_twin_probing", default=False)
_CACHE: dict[str, frozenset[str]] = {}
_CLASH = re.compile(r"Variable name (\S+) already exists")
#: bump when the stored file changes
_FORMAT = 1
#: name files kept on disk (the oldest beyond this are removed when one is saved)
MAX_NAME_FILES = 2048
_STAMP: list[str] = []


@dataclasses.dataclass
class _ProbeSimulator(Simulator):
    """Stand-in simulator of the probe build: zeros, one per input row."""

    name: str = "probe"

    def __call__(self, x, params):
        return pt.zeros((x.shape[0],))

    def spec(self) -> dict[str, Any]:
        return {"kind": "probe"}


def _probe_data(twin: Any):
    from .data import TwinData

    cols = getattr(twin.discrepancy, "columns", None)
    d = 1 + (max(int(c) for c in cols) if cols else 0)
    n = 4
    x = np.column_stack([np.linspace(0.1, 1.0, n) + j for j in range(d)])
    unit = None
    if twin.hierarchy is not None:
        units = list(twin.hierarchy.units or ("u0", "u1"))
        unit = [units[i % len(units)] for i in range(n)]
    return TwinData(x=x, y=np.linspace(0.5, 1.5, n), unit=unit)


def _build_all(twin: Any) -> set[str]:
    import pytensor

    # the probe models are thrown away: no stack trace on every variable (a third of the cost)
    with pytensor.config.change_flags(traceback__limit=0):
        return _build_all_variants(twin)


def _build_all_variants(twin: Any) -> set[str]:
    probe = dataclasses.replace(twin, simulator=_ProbeSimulator())
    data = _probe_data(probe)
    names: set[str] = set()
    unit_idx = None if probe.hierarchy is None else np.zeros(2, dtype=int)
    variants: list[dict[str, Any]] = [
        {},
        {"predict_at": PredictSpec(X=data.x[:2], unit_idx=unit_idx)},
    ]
    if probe.per_unit_names:
        variants.append({"predict_at": PredictSpec(X=data.x[:2], new_unit=True)})
    if probe.marginal_discrepancy():
        variants.append({"conditional_roles": True})
    # a parameter whose parametrisation is chosen from the data ("auto") may be built either way
    probes = [probe]
    if any(p.per_unit and (p.centered == "auto" or p._auto) for p in probe.parameters):
        probes = [dataclasses.replace(probe, parameters=tuple(
            dataclasses.replace(p, centered=c, _auto=False) if p.per_unit and (p.centered == "auto" or p._auto)
            else p for p in probe.parameters)) for c in (False, True)]
    for twin_variant in probes:
        for kw in variants:
            model = twin_variant.build_model(data, check=False, **kw)
            names.update(map(str, model.named_vars))
    return names


def builder_stamp() -> str:
    """Hash of what the builder's names depend on besides the declaration: the source of
    :mod:`vvuq_twin.twin` and the PyMC / PyTensor versions (computed once per process)."""
    if not _STAMP:
        import importlib.metadata as md

        h = hashlib.sha256(f"format {_FORMAT}".encode())
        for pkg in ("pymc", "pytensor"):
            try:
                h.update(f"{pkg} {md.version(pkg)}".encode())
            except md.PackageNotFoundError:  # pragma: no cover
                h.update(f"{pkg} none".encode())
        for path in sorted(Path(__file__).parent.glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        _STAMP.append(h.hexdigest())
    return _STAMP[0]


_FILE_HASHES: dict[str, str] = {}


def _component_sources(twin: Any) -> str:
    """Hash of the source files of the twin's component classes defined outside
    :mod:`vvuq_twin.twin` (a user's own discrepancy or observation model: the declaration hash
    holds their spec, not their code). The simulator is not built by the probe."""
    own = Path(__file__).parent.resolve()
    comps = [twin.discrepancy, twin.observation, twin.hierarchy, *twin.parameters]
    comps += [getattr(q, attr, None) for q in twin.parameters for attr in ("prior", "pop_scale")]
    h = hashlib.sha256()
    for path in sorted({str(f) for c in comps if c is not None
                        for f in [_source_file(type(c))] if f is not None and f.parent != own}):
        if path not in _FILE_HASHES:
            try:
                _FILE_HASHES[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                _FILE_HASHES[path] = "unreadable"
        h.update(f"{path} {_FILE_HASHES[path]}".encode())
    return h.hexdigest()


def _source_file(cls: type) -> Path | None:
    import inspect

    try:
        f = inspect.getsourcefile(cls)
    except (TypeError, OSError):  # a builtin or a class made at run time
        return None
    return Path(f).resolve() if f else None


def _disk_path(twin_hash: str, twin: Any | None = None) -> Path:
    extra = "" if twin is None else _component_sources(twin)
    key = hashlib.sha256(f"{twin_hash} {builder_stamp()} {extra}".encode()).hexdigest()
    return cache_dir() / f"names-{key}.json"


def _load(twin_hash: str, twin: Any | None = None) -> frozenset[str] | None:
    path = _disk_path(twin_hash, twin)
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(blob, dict) and blob.get("declaration") == twin_hash
            and isinstance(blob.get("names"), list)):
        return None
    return frozenset(map(str, blob["names"]))


def _save(twin_hash: str, names: frozenset[str], twin: Any | None = None) -> None:
    path = _disk_path(twin_hash, twin)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"declaration": twin_hash, "names": sorted(names)}))
        os.replace(tmp, path)
        files = sorted(path.parent.glob("names-*.json"), key=lambda p: p.stat().st_mtime)
        for old in files[:max(0, len(files) - MAX_NAME_FILES)]:
            old.unlink()
    except OSError:  # a read-only or vanished cache directory: the names are only not kept
        try:
            tmp.unlink()
        except OSError:
            pass


def builder_names(twin: Any) -> frozenset[str]:
    """Every variable name the model builder creates for ``twin`` besides its parameters.

    From memory, else from disk (see the module docstring), else by the probe builds.
    """
    key = twin.hash
    if key not in _CACHE:
        disk = cache_enabled()
        names = _load(key, twin) if disk else None
        if names is None:
            token = _PROBING.set(True)
            try:
                built = _build_all(twin)
            finally:
                _PROBING.reset(token)
            names = frozenset(built - set(twin.parameter_names))
            if disk:
                _save(key, names, twin)
        _CACHE[key] = names
    return _CACHE[key]


def _names_without(twin: Any, clash: str) -> set[str]:
    """Builder names of ``twin`` with the clashing parameter renamed away (for the message)."""
    renamed = [dataclasses.replace(p, name=f"{p.name}__clash") if p.name == clash else p
               for p in twin.parameters]
    token = _PROBING.set(True)
    try:
        other = dataclasses.replace(twin, parameters=renamed)
        return _build_all(other) - set(other.parameter_names)
    except Exception:  # noqa: BLE001 - the list is only a hint
        return set()
    finally:
        _PROBING.reset(token)


def check_parameter_names(twin: Any) -> None:
    """Raise :class:`TwinSpecificationError` when a parameter name clashes with a builder name.

    Called by ``Twin.__post_init__``. A probe build that fails for another reason is ignored
    here (the real build and ``Twin.check`` report it with the real data).
    """
    if _PROBING.get():
        return
    try:
        builder_names(twin)
    except ValueError as exc:
        m = _CLASH.search(str(exc))
        if m is None:
            return
        name = m.group(1)
        derived = {f"{q.name}{suf}": q.name for q in twin.parameters if q.per_unit
                   for suf in ("_mu", "_sigma", "_z", "_lin", "_z_new", "_new")}
        if name in derived:
            why = (f"the builder also creates {name!r} for per-unit parameter "
                   f"{derived[name]!r} (its population location/scale/offsets)")
        else:
            why = ("the model builder creates a variable of that name for this twin's "
                   "observation model, discrepancy or role variables")
        raise TwinSpecificationError(
            f"Twin {twin.name!r}: parameter name {name!r} is reserved: {why}. Rename the "
            f"parameter. Names the builder creates for this twin: "
            f"{sorted(_names_without(twin, name))}."
        ) from exc
    except Exception:  # noqa: BLE001 - not a name clash; the real build reports it
        return
    clash = sorted(set(twin.parameter_names) & builder_names(twin))
    if clash:  # pragma: no cover - PyMC raises on the duplicate first
        raise TwinSpecificationError(
            f"Twin {twin.name!r}: parameter name(s) {clash} are created by the model builder; "
            "rename them.")
