"""Compile a twin's model for nutpie once per declaration, across processes.

nutpie's numba backend compiles the log density and its gradient in two steps: PyTensor
generates numba functions for the graph (PyTensor caches those on disk), and nutpie wraps them
in two C callbacks (``numba.cfunc``) that nuts-rs calls. nutpie's callbacks close over the
observed-data arrays, which numba cannot cache ("uses dynamic globals"), so every new process
recompiles them - measured on 2 cores: 9.1 s of an 11.7 s compile of the README twin, with
PyTensor's own cache warm.

Here the two callbacks are generated as source that reads every shared array through nutpie's
user-data record (as nutpie's do) and closes over nothing, so numba can cache them. They are
stored under a key made of the declaration hash, the data's structure hash and the versions of
everything that shapes the generated code (:func:`cache_key`), in :func:`cache_dir`, with a
small JSON file of the model's layout. A later process with the same declaration and data
structure loads the machine code and the layout, builds only the initial-point function (as
nutpie does, so the same seed gives the same draws), and skips PyTensor's graph rewriting and
numba's compiler altogether.

A miss is compiled and saved by a forked child (:func:`_compile_in_child`); this process then
loads the saved object code like any later process, so the first process on a fresh machine
samples with the same machine code as the second (a fresh numba compile and its cached object
code can differ in the last bits; every draw of the tumor twin did).

Anything unexpected on this path (another nutpie layout, a numba that refuses to cache) falls
back to ``nutpie.compile_pymc_model`` and says so in the returned status; it never changes
what is sampled.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._io import cache_dir, cache_enabled

__all__ = ["cache_dir", "cache_key", "compile_many", "compile_numba_cached", "prune", "CACHE_FORMAT", "MAX_MODELS"]

#: bump when the generated source or the layout file changes
CACHE_FORMAT = 1
#: compiled models kept on disk (the least recently saved beyond this are removed)
MAX_MODELS = 128

_ENV_OFF = "VVUQ_TWIN_COMPILE_CACHE"

# generated callbacks -> cache disambiguator (read by the numba cache locator below)
_CACHED_FUNCS: "dict[Any, str]" = {}
_LOCK = threading.Lock()
_LOCATOR_INSTALLED = False


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("nutpie", "pytensor", "pymc", "numba", "llvmlite", "numpy", "vvuq-twin"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "none"
    return out


def cache_key(declaration_hash: str, structure_hash: str) -> str:
    """Key of a compiled model: declaration, data structure, versions, platform and config."""
    import pytensor

    blob = {
        "format": CACHE_FORMAT,
        "declaration": declaration_hash,
        "structure": structure_hash,
        "versions": _versions(),
        "python": sys.version,
        "machine": platform.machine(),
        "floatX": pytensor.config.floatX,
        "numba_fastmath": bool(getattr(pytensor.config, "numba__fastmath", False)),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _install_locator() -> None:
    """Register a numba cache locator for the generated callbacks (once per process)."""
    global _LOCATOR_INSTALLED
    if _LOCATOR_INSTALLED:
        return
    from numba.core.caching import CacheImpl, _CacheLocator

    class _TwinCallbackLocator(_CacheLocator):
        def __init__(self, py_func, py_file, key):
            self._py_func = py_func
            self._py_file = py_file
            self._key = key

        def ensure_cache_path(self):
            path = self.get_cache_path()
            os.makedirs(path, exist_ok=True)

        def get_cache_path(self):
            return str(cache_dir())

        def get_source_stamp(self):
            return CACHE_FORMAT

        def get_disambiguator(self):
            return self._key[:40]

        @classmethod
        def from_function(cls, py_func, py_file):
            key = _CACHED_FUNCS.get(py_func)
            if key is not None:
                return cls(py_func, py_file, key)
            return None

    CacheImpl._locator_classes.insert(0, _TwinCallbackLocator)
    _LOCATOR_INSTALLED = True


def _shared_extraction(names: list[str], ndims: list[int]) -> tuple[list[str], list[str]]:
    """Source lines that view each shared array through the user-data record."""
    lines, args = [], []
    for i, (nm, nd) in enumerate(zip(names, ndims)):
        lines.append(f"        _p{i} = address_as_void_pointer(_sh['data']['{nm}'][()])")
        lines.append(f"        _a{i} = carray(_p{i}, (int(_sh['size']['{nm}'][()]),), DT{i})")
        if nd != 1:
            lines.append(f"        _s{i} = _sh['shape']['{nm}']")
            shape = "(" + "".join(f"_s{i}[{j}], " for j in range(nd)) + ")"
            lines.append(f"        _a{i} = _a{i}.reshape({shape})")
        args.append(f"_a{i}")
    return lines, args


def _logp_source(n_dim: int, names: list[str], ndims: list[int]) -> str:
    ext, args = _shared_extraction(names, ndims)
    call = ", ".join(["x", *args])
    body = "\n".join(ext)
    return f"""
def vvuq_twin_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_dim},))
        logp = carray(logp_, ())
        _ud = carray(user_data_, (), RECORD)
        _sh = _ud['shared']
{body}
        logp_val, grad = inner({call})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""


def _expand_source(n_dim: int, n_expanded: int, names: list[str], ndims: list[int]) -> str:
    ext, args = _shared_extraction(names, ndims)
    call = ", ".join(["x", *args])
    body = "\n".join(ext)
    return f"""
def vvuq_twin_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
        _ud = carray(user_data_, (), RECORD)
        _sh = _ud['shared']
{body}
        (values,) = inner({call})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def _make_pyfunc(src: str, name: str, inner, record_dtype, dtypes: list[np.dtype], key: str):
    import numba
    from nutpie.compile_pymc import address_as_void_pointer

    env: dict[str, Any] = {
        # numba rebuilds a cached function's environment by importing its module
        "__name__": __name__,
        "np": np, "carray": numba.carray, "address_as_void_pointer": address_as_void_pointer,
        "inner": inner, "RECORD": record_dtype,
        **{f"DT{i}": np.dtype(d) for i, d in enumerate(dtypes)},
    }
    code = compile(src, f"<vvuq_twin_{name}_{key[:12]}>", "exec")
    exec(code, env)
    fn = env[name]
    _CACHED_FUNCS[fn] = f"{name}-{key}"
    return fn


def _signatures():
    import numba

    logp_sig = numba.types.int64(
        numba.types.uint64, numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double), numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    expand_sig = numba.types.int64(
        numba.types.uint64, numba.types.uint64, numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double), numba.types.voidptr,
    )
    return logp_sig, expand_sig


def _load_cfunc(pyfunc, sig):
    """The cached C callback of ``pyfunc``, or None when the disk cache has none."""
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    cf = CFunc(pyfunc, sigutils.normalize_signature(sig), locals={}, options={})
    cf.enable_caching()
    cres = cf._cache.load_overload(cf._sig, cf._targetdescr.target_context)
    if cres is None:
        return None
    cf._cache_hits += 1
    cf._library = cres.library
    cf._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
    cf._wrapper_address = cf._library.get_pointer_to_function(cf._wrapper_name)
    return cf


def _compile_cfunc(pyfunc, sig) -> tuple[Any, list[str]]:
    """Compile (and save to the disk cache); also return numba's reasons for not caching."""
    import numba

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", numba.NumbaWarning)
        cf = numba.cfunc(sig, cache=True)(pyfunc)
    return cf, [str(x.message) for x in w if "cache" in str(x.message).lower()]


def _initial_point_fn(model, names, shapes):
    """nutpie's initial-point function, built exactly as ``nutpie.compile_pymc_model`` does."""
    from nutpie.compile_pymc import _rv_dict_to_flat_array_wrapper, _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(
        model=model, overrides=None, default_strategy="support_point",
        jitter_rvs=set(model.free_RVs), return_transformed=True,
    )
    return _rv_dict_to_flat_array_wrapper(_wrap_with_lock(fn), names=names, shapes=shapes)


def _model_shared(model) -> dict[str, Any]:
    """The model's shared variables a later process can refill: data containers, dim lengths."""
    shared = {v.name: v for v in model.data_vars if hasattr(v, "get_value")}
    for name, v in model.dim_lengths.items():
        if hasattr(v, "get_value") and getattr(v, "name", None):
            shared.setdefault(v.name, v)
    return shared


def _shared_values(model, names: list[str]) -> dict[str, np.ndarray]:
    shared = _model_shared(model)
    out = {}
    for nm in names:
        if nm not in shared:
            raise KeyError(f"shared variable {nm!r} of the cached layout is not in the model")
        a = np.array(shared[nm].get_value(), order="C", copy=True)
        a.flags.writeable = False
        out[nm] = a
    return out


def _assemble(model, layout: dict, logp_cf, expand_cf, shared_data: dict[str, np.ndarray]):
    from nutpie.compile_pymc import CompiledPyMCModel, _prepare_dims_and_coords, make_user_data

    names = layout["names"]
    slices = [slice(a, b) for a, b in layout["slices"]]
    shapes = [tuple(s) for s in layout["shapes"]]
    shape_info = (names, slices, shapes)
    joined = layout["n_joined"]
    shared_vars = {nm: _FakeShared(a.ndim) for nm, a in shared_data.items()}
    user_data = make_user_data(shared_vars, shared_data)
    dims, coords = _prepare_dims_and_coords(model, shape_info)
    ip = _initial_point_fn(model, names[:joined], shapes[:joined])
    return CompiledPyMCModel(
        _n_dim=layout["n_dim"], dims=dims, _coords=coords,
        _shapes={nm: tuple(s) for nm, s in zip(names, shapes)},
        compiled_logp_func=logp_cf, compiled_expand_func=expand_cf,
        initial_point_func=ip, shared_data=shared_data, user_data=user_data,
        n_expanded=layout["n_expanded"], shape_info=shape_info,
        logp_func=None, expand_func=None,
    )


class _FakeShared:
    """What ``nutpie.compile_pymc.make_user_data`` reads of a shared variable: its rank."""

    def __init__(self, ndim: int):
        self.ndim = ndim


def compile_numba_cached(model, declaration_hash: str, structure_hash: str) -> tuple[Any, dict]:
    """nutpie model for ``model`` (numba backend), from the disk cache when it holds it.

    Returns
    -------
    compiled : nutpie CompiledPyMCModel
    status : dict
        ``compile_cache_hit`` (bool), ``compile_cache`` ("disk"; "miss: saved": compiled in
        a child and loaded from disk; "miss: saved (compiled in this process: WHY ...)"; "miss:
        not cacheable (WHY) [compiled twice: ...]" the first time, "... [known from an earlier
        process ...]" later (the verdict is kept on disk, so later processes compile once,
        without a child); "off" or "fallback: ..."), ``compile_cache_key``,
        ``compile_time_s``.
    """
    import nutpie

    t0 = time.perf_counter()
    if not cache_enabled():
        compiled = nutpie.compile_pymc_model(model)
        return compiled, {"compile_cache_hit": False, "compile_cache": "off",
                          "compile_time_s": time.perf_counter() - t0}
    key = cache_key(declaration_hash, structure_hash)
    try:
        with _LOCK:
            _install_locator()
            compiled, how = _compile_or_load(model, key)
    except Exception as exc:  # noqa: BLE001 - never let the cache change what is sampled
        how = f"fallback: {type(exc).__name__}: {exc}"
        warnings.warn(
            f"The on-disk compile cache could not be used ({how}); compiling with "
            "nutpie.compile_pymc_model instead (same draws, no reuse across processes). Set "
            f"{_ENV_OFF}=0 to skip the cache, or clear {cache_dir()}.",
            RuntimeWarning, stacklevel=3,
        )
        compiled = nutpie.compile_pymc_model(model)
    return compiled, {"compile_cache_hit": how == "disk", "compile_cache": how,
                      "compile_cache_key": key, "compile_time_s": time.perf_counter() - t0}


def _compile_or_load(model, key: str):
    layout_path = cache_dir() / f"layout-{key}.json"
    logp_sig, expand_sig = _signatures()
    loaded = _load(model, key, layout_path, logp_sig, expand_sig)
    if loaded is not None:
        return loaded, "disk"
    marker = _uncacheable_path(key)
    if marker.exists():
        # an earlier process found this model not cacheable: a child could not hand its code
        # over, so compile once, here, and say where the verdict comes from
        compiled, how = _compile_fresh(model, key, layout_path, logp_sig, expand_sig)
        if how.startswith("miss: not cacheable"):
            return compiled, how + " [known from an earlier process: compiled once, in this process]"
        marker.unlink(missing_ok=True)  # the verdict no longer holds (the model now caches)
        return compiled, "miss: saved (compiled in this process: an earlier process found it not cacheable; a later process may differ in the last bits)"
    why_not = _child_compile_unavailable()
    if why_not is None:
        child = _compile_in_child(model, key, layout_path, logp_sig, expand_sig)
        if child == "miss: saved":
            loaded = _load(model, key, layout_path, logp_sig, expand_sig)
            if loaded is not None:
                # the machine code this process runs is the one every later process loads
                return loaded, "miss: saved"
            why_not = "the child's saved model could not be loaded"
        elif _keep_verdict(key, child):
            # the child's machine code cannot reach this process: compile again, here (this
            # once: the verdict is kept so that later processes compile once, without a child)
            compiled, how = _compile_fresh(model, key, layout_path, logp_sig, expand_sig)
            return compiled, (how + " [compiled twice: in a child that found it not cacheable, "
                              "then in this process; later processes compile once]")
        else:
            why_not = f"the child process reported {child!r}"
    compiled, how = _compile_fresh(model, key, layout_path, logp_sig, expand_sig)
    if how == "miss: saved":
        how = f"miss: saved (compiled in this process: {why_not}; a later process may differ in the last bits)"
    return compiled, how


def _uncacheable_path(key: str) -> Path:
    return cache_dir() / f"uncacheable-{key}.txt"


def _keep_verdict(key: str, how: str) -> bool:
    """Whether a child's status says "not cacheable"; if so, keep that verdict on disk so that
    later processes compile once, in-process, without a child (shared by every caller of a
    child compile)."""
    if not how.startswith("miss: not cacheable"):
        return False
    _write_marker(_uncacheable_path(key), how)
    return True


def _write_marker(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next process a second compile
        pass


#: seconds a child compile may take before the parent compiles in-process instead
_CHILD_TIMEOUT_ENV = "VVUQ_TWIN_COMPILE_CHILD_TIMEOUT"
_CHILD_ENV = "VVUQ_TWIN_COMPILE_IN_CHILD"


def _child_compile_unavailable() -> str | None:
    """Why a miss cannot be compiled in a forked child (None: it can)."""
    if os.environ.get(_CHILD_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return f"${_CHILD_ENV}=0"
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return f"no fork-safe child processes on {sys.platform}"
    xla = sys.modules.get("jax._src.xla_bridge")
    if xla is not None:
        try:
            running = bool(xla.backends_are_initialized())
        except Exception:  # noqa: BLE001 - another JAX layout: assume its runtime runs
            running = True
        if running:
            # JAX's runtime threads may hold locks a forked child would wait on forever
            return "JAX's runtime is running in this process (forking it is unsafe)"
    return None


def _compile_in_child(model, key: str, layout_path: Path, logp_sig, expand_sig) -> str:
    """Compile and save the model in a forked child; return the child's status string.

    Why a child: numba's machine code for a freshly compiled callback and the same callback
    loaded from its cache file (object code) can differ in the last bits of the log density
    (measured on the tumor twin: every draw differed between a first and a second process
    at the same seed). A process that compiled in-process would therefore sample differently
    from every later process that loads the cache. Compiling in a child and loading the
    saved object code here makes the first process run exactly what later ones run. The
    child is forked (it inherits the model; nothing is pickled) and only compiles and writes
    the cache; on any failure or after the timeout the caller compiles in-process.
    """
    pid, r = _fork_compile(model, key, layout_path, logp_sig, expand_sig)
    return _collect_children({key: (pid, r)})[key]


def _fork_compile(model, key: str, layout_path: Path, logp_sig, expand_sig) -> tuple[int, int]:
    """Fork a child that compiles and saves ``model``; return its pid and the pipe it reports on."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not stop the compile
            pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compile, save, report, leave without running the parent's exit code
        code = 1
        try:
            os.close(r)
            _, how = _compile_fresh(model, key, layout_path, logp_sig, expand_sig)
            os.write(w, how.encode()[:4000])
            code = 0
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            try:
                os.write(w, f"error: {type(exc).__name__}: {exc}".encode()[:4000])
            except Exception:  # noqa: BLE001
                pass
        finally:
            # no flush: another thread of the parent may have held a stream's lock at the fork
            # (its buffers were flushed before it); anything the child printed is dropped
            os._exit(code)
    os.close(w)
    return pid, r


def _collect_children(children: dict[Any, tuple[int, int]], on_done=None) -> dict[Any, str]:
    """Wait for forked compile children (``{tag: (pid, pipe)}``); their status strings by tag.

    ``tag`` is the caller's name for a child (e.g. its cache key); pipes are only used inside,
    since a finished child's pipe number is reused by the next one. ``on_done(tag, status)``
    may return new ``(tag, pid, pipe)`` children to wait for as well (a rolling pool; a tag must
    not repeat). A child still running ``$VVUQ_TWIN_COMPILE_CHILD_TIMEOUT`` seconds (default
    3600) after it was started is killed and reported as a timeout.
    """
    import select
    import signal

    timeout = float(os.environ.get(_CHILD_TIMEOUT_ENV, "3600"))
    running: dict[int, tuple[Any, int]] = {}  # pipe -> (tag, pid)
    started: dict[int, float] = {}
    chunks: dict[int, list[bytes]] = {}
    done: dict[Any, str] = {}

    def add(tag: Any, pid: int, r: int) -> None:
        if tag in done or any(t == tag for t, _ in running.values()):
            try:  # a caller's bug: leave no child behind
                os.kill(pid, signal.SIGKILL)
                os.close(r)
                os.waitpid(pid, 0)
            except OSError:
                pass
            raise ValueError(f"compile child tag {tag!r} given twice")
        running[r], started[r], chunks[r] = (tag, pid), time.monotonic(), []

    def finish(r: int, how: str) -> None:
        tag, pid = running.pop(r)
        os.close(r)
        os.waitpid(pid, 0)
        done[tag] = how
        for tag2, pid2, r2 in (on_done(tag, how) or ()) if on_done is not None else ():
            add(tag2, pid2, r2)

    try:
        for tag, (pid, r) in children.items():
            add(tag, pid, r)
        while running:
            now = time.monotonic()
            for r in [r for r in running if now - started[r] >= timeout]:
                os.kill(running[r][1], signal.SIGKILL)
                finish(r, f"timeout after {timeout:.0f} s (${_CHILD_TIMEOUT_ENV})")
            if not running:
                break
            wait = max(0.0, min(timeout - (now - started[r]) for r in running))
            ready, _, _ = select.select(list(running), [], [], min(wait, 1.0))
            for r in ready:
                b = os.read(r, 4096)
                if b:
                    chunks[r].append(b)
                else:
                    finish(r, b"".join(chunks[r]).decode(errors="replace") or "no report (the child died)")
    finally:
        for r, (_, pid) in list(running.items()):  # only after an exception: leave no child behind
            try:
                os.kill(pid, signal.SIGKILL)
                os.close(r)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return done


def compile_many(jobs: "list[tuple[Any, str]]", max_workers: int | None = None) -> dict[str, str]:
    """Compile and save several models at once, each in its own forked child.

    ``jobs``: ``(model, key)`` pairs (keys from :func:`cache_key`). At most ``max_workers``
    children run at a time (default: the CPUs). A model already on disk, or known not to be
    cacheable, is not compiled again. Nothing is loaded here: a later
    :func:`compile_numba_cached` of the same key loads the saved machine code (a disk hit), so
    the draws are those of a single compile. Returns a status per key: ``"disk"`` (already
    saved), ``"saved"``, ``"not cacheable (...)"`` (the later call compiles it in-process),
    ``"skipped: WHY"`` (no child can be forked here; the later call compiles as usual) or the
    child's error.
    """
    out: dict[str, str] = {}
    todo: list[tuple[Any, str]] = []
    for model, key in jobs:
        if key in out or any(k == key for _, k in todo):
            continue
        if _layout_usable(model, cache_dir() / f"layout-{key}.json"):
            out[key] = "disk"
        elif _uncacheable_path(key).exists():
            out[key] = "not cacheable (known from an earlier compile)"
        else:
            todo.append((model, key))
    if not todo:
        return out
    why_not = _child_compile_unavailable()
    if why_not is not None:
        out.update({key: f"skipped: {why_not}" for _, key in todo})
        return out
    n = max(1, int(max_workers if max_workers is not None else (os.cpu_count() or 1)))
    logp_sig, expand_sig = _signatures()
    with _LOCK:
        _install_locator()
        cache_dir().mkdir(parents=True, exist_ok=True)
        queue = list(todo)

        def start() -> list[tuple[str, int, int]]:
            if not queue:
                return []
            model, key = queue.pop(0)
            pid, r = _fork_compile(model, key, cache_dir() / f"layout-{key}.json", logp_sig, expand_sig)
            return [(key, pid, r)]

        def on_done(key: str, how: str) -> list[tuple[str, int, int]]:
            if how == "miss: saved":
                out[key] = "saved"
            elif _keep_verdict(key, how):
                out[key] = how[len("miss: "):]
            else:
                out[key] = how
            return start()

        first: dict[str, tuple[int, int]] = {}
        for _ in range(min(n, len(queue))):
            for key, pid, r in start():
                first[key] = (pid, r)
        _collect_children(first, on_done)
    return out


def _layout_usable(model, layout_path: Path) -> dict | None:
    """The saved layout when it is of this cache format and of ``model``'s free variables
    (None when absent, unreadable or stale: the model is then compiled again)."""
    try:
        layout = json.loads(layout_path.read_text())
    except (OSError, ValueError):
        return None
    value_names = [model.rvs_to_values[v].name for v in model.free_RVs]
    try:
        ok = layout.get("format") == CACHE_FORMAT and layout["names"][: layout["n_joined"]] == value_names
    except (KeyError, TypeError, AttributeError):
        return None
    return layout if ok else None


def _load(model, key: str, layout_path: Path, logp_sig, expand_sig):
    """The model from the disk cache, or None when the cache has no usable entry for it."""
    layout = _layout_usable(model, layout_path)
    if layout is None:
        return None
    shared_data = _shared_values(model, layout["shared_names"])
    dts = [shared_data[n].dtype for n in layout["logp_shared"]]
    nds = [shared_data[n].ndim for n in layout["logp_shared"]]
    rec = _record_dtype(shared_data)
    lp = _make_pyfunc(_logp_source(layout["n_dim"], layout["logp_shared"], nds),
                      "vvuq_twin_logp", None, rec, dts, key)
    dts_e = [shared_data[n].dtype for n in layout["expand_shared"]]
    nds_e = [shared_data[n].ndim for n in layout["expand_shared"]]
    ex = _make_pyfunc(_expand_source(layout["n_dim"], layout["n_expanded"], layout["expand_shared"], nds_e),
                      "vvuq_twin_expand", None, rec, dts_e, key)
    logp_cf = _load_cfunc(lp, logp_sig)
    expand_cf = _load_cfunc(ex, expand_sig) if logp_cf is not None else None
    if logp_cf is not None and expand_cf is not None:
        return _assemble(model, layout, logp_cf, expand_cf, shared_data)
    return None


def _record_dtype(shared_data: dict[str, np.ndarray]) -> np.dtype:
    from nutpie.compile_pymc import make_user_data

    return make_user_data({n: _FakeShared(a.ndim) for n, a in shared_data.items()}, shared_data).dtype


def _compile_fresh(model, key: str, layout_path: Path, logp_sig, expand_sig):
    """nutpie's numba compilation with cacheable callbacks; save them and the layout."""
    from nutpie.compile_pymc import _make_functions
    from pymc.initial_point import make_initial_point_fn

    ipfn = make_initial_point_fn(model=model, default_strategy="support_point",
                                 jitter_rvs=set(model.free_RVs), return_transformed=True)
    n_dim, n_expanded, logp_fn_pt, expand_fn_pt, _, shape_info = _make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=ipfn, var_names=None,
    )
    logp_shared = [v.name for v in logp_fn_pt.get_shared()]
    expand_shared = [v.name for v in expand_fn_pt.get_shared()]
    shared_data: dict[str, np.ndarray] = {}
    for v in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if v.name in shared_data:
            continue
        a = np.array(v.get_value(), order="C", copy=True)
        a.flags.writeable = False
        shared_data[v.name] = a
    rec = _record_dtype(shared_data)
    lp = _make_pyfunc(_logp_source(n_dim, logp_shared, [shared_data[n].ndim for n in logp_shared]),
                      "vvuq_twin_logp", logp_fn_pt.vm.jit_fn, rec,
                      [shared_data[n].dtype for n in logp_shared], key)
    ex = _make_pyfunc(_expand_source(n_dim, n_expanded, expand_shared, [shared_data[n].ndim for n in expand_shared]),
                      "vvuq_twin_expand", expand_fn_pt.vm.jit_fn, rec,
                      [shared_data[n].dtype for n in expand_shared], key)
    logp_cf, why1 = _compile_cfunc(lp, logp_sig)
    expand_cf, why2 = _compile_cfunc(ex, expand_sig)
    names, slices, shapes = shape_info
    layout = {
        "format": CACHE_FORMAT, "n_dim": int(n_dim), "n_expanded": int(n_expanded),
        "n_joined": len(model.free_RVs), "names": list(names),
        "slices": [[int(s.start), int(s.stop)] for s in slices],
        "shapes": [[int(d) for d in s] for s in shapes],
        "logp_shared": logp_shared, "expand_shared": expand_shared,
        "shared_names": list(shared_data),
    }
    compiled = _assemble(model, layout, logp_cf, expand_cf, shared_data)
    why = why1 + why2
    foreign = sorted(set(shared_data) - set(_model_shared(model)))
    if foreign:
        # a later process could not refill these from its model: do not offer a layout
        why.append(f"shared variables {foreign} are not data containers of the model")
    if why:
        return compiled, "miss: not cacheable (" + "; ".join(why)[:300] + ")"
    layout_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = layout_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(layout))
    os.replace(tmp, layout_path)
    prune(MAX_MODELS)
    return compiled, "miss: saved"


def prune(keep: int) -> list[str]:
    """Keep the ``keep`` most recently saved models in :func:`cache_dir`; return removed keys.

    A model is its layout file plus the numba index and data files named by its key.
    """
    root = cache_dir()
    layouts = sorted(root.glob("layout-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for path in layouts[max(0, int(keep)):]:
        key = path.stem[len("layout-"):]
        for f in root.glob(f"*{key[:40]}*"):
            try:
                f.unlink()
            except OSError:  # another process removed it first
                pass
        try:
            path.unlink()
        except OSError:
            pass
        removed.append(key)
    return removed
