"""Atomic, complete writes and content checksums shared by every writer of vvuq_twin.

Every file vvuq_twin writes at a final path (results, predictions, summaries, reports,
checkpoints, JUnit XML) goes through :func:`atomic_path`: the content is written to a temporary
file in the same directory, flushed and fsynced, then moved over the final path with
:func:`os.replace` (atomic on POSIX and Windows) and the directory is fsynced. A reader, or a
process killed at any moment, therefore sees either no file, the old complete file or the new
complete file - never a truncated one. Temporary files left by a killed writer
(``.<name>.tmp-<pid>-<random>``) are removed by the next write to the same path once their
process is gone.

:func:`array_sha256` and :func:`dataset_checksums` give canonical SHA-256 checksums of array
contents (independent of byte order, chunking and file format), stored at write and verified at
load. They protect against accidents and naive edits, not against a forger who recomputes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "atomic_path",
    "cache_dir",
    "cache_enabled",
    "atomic_write_text",
    "atomic_write_bytes",
    "write_netcdf",
    "array_sha256",
    "dataset_checksums",
    "json_sha256",
    "fsync_file",
]


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (``fsync``)."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` whose writing process no longer exists."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(tmp.name[len(f".{path.name}.tmp-"):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager: yield a temporary path next to ``path``; on success move it there.

    Write the complete content to the yielded path inside the ``with`` block. On normal exit the
    temporary file is fsynced and atomically renamed to ``path`` (an existing file there is
    replaced only then, never truncated); on an exception it is deleted and ``path`` is left as
    it was.

    Examples
    --------
    >>> with atomic_path("out/result.nc") as tmp:      # doctest: +SKIP
    ...     dataset.to_netcdf(tmp, engine="h5netcdf")
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file {tmp} for {final}")
        fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def write_netcdf(obj: Any, path: str | os.PathLike, engine: str | None = "h5netcdf") -> Path:
    """Save an xarray object or ArviZ InferenceData as NetCDF atomically; return the path."""
    with atomic_path(path) as tmp:
        if engine is None:
            obj.to_netcdf(str(tmp))
        else:
            obj.to_netcdf(str(tmp), engine=engine)
    return Path(path)


def _canonical_bytes(values: Any) -> tuple[str, bytes]:
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind in "biuf":
        # numbers as little-endian float64 (exact for the integers and floats results hold), so
        # the checksum survives the dtype and byte-order changes of a NetCDF round trip
        f = np.array(arr, dtype="<f8", order="C")
        f[np.isnan(f)] = np.nan  # one NaN bit pattern
        return "num", f.tobytes()
    if kind == "c":
        return "complex", np.ascontiguousarray(arr, dtype="<c16").tobytes()
    if kind in "mM":
        return "time", np.ascontiguousarray(arr.astype("datetime64[ns]" if kind == "M" else
                                                       "timedelta64[ns]").view("<i8")).tobytes()
    flat = []
    for v in arr.ravel().tolist():
        if v is None:
            flat.append("\x00")
        elif isinstance(v, bytes):
            flat.append(v.decode("utf-8", "replace"))
        elif isinstance(v, str):
            flat.append(v)
        else:  # a ragged array element (e.g. per-chain SMC statistics): hash its numbers
            try:
                inner = np.asarray(v)
                flat.append("\x02" + array_sha256(inner) if inner.dtype.kind in "biufcmM"
                            else str(v))
            except (TypeError, ValueError):
                flat.append(str(v))
    return "str", "\x1f".join(flat).encode("utf-8")


def array_sha256(values: Any, dims: tuple[str, ...] | None = None) -> str:
    """SHA-256 of an array's content: its dims, shape, a dtype class and canonical bytes."""
    arr = np.asarray(values)
    kind, payload = _canonical_bytes(arr)
    h = hashlib.sha256()
    h.update(json.dumps({"dims": list(dims) if dims is not None else None,
                         "shape": list(arr.shape), "kind": kind}).encode())
    h.update(payload)
    return h.hexdigest()


def dataset_checksums(ds: Any) -> dict[str, str]:
    """Checksum of each data variable and coordinate of an xarray Dataset (by name).

    Coordinates are keyed ``"coord:<name>"``; a variable's checksum covers its dims, shape and
    values.
    """
    out: dict[str, str] = {}
    for name in sorted(map(str, ds.data_vars)):
        v = ds[name]
        out[name] = array_sha256(v.values, tuple(map(str, v.dims)))
    for name in sorted(map(str, ds.coords)):
        v = ds.coords[name]
        out[f"coord:{name}"] = array_sha256(v.values, tuple(map(str, v.dims)))
    return out


def json_sha256(obj: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace) of a JSON-able object."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_dir() -> Path:
    """Directory of vvuq_twin's on-disk caches (compiled models, declaration names).

    ``$VVUQ_TWIN_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/vvuq_twin/compiled`` (default
    ``~/.cache/vvuq_twin/compiled``). Deleting it is always safe.
    """
    env = os.environ.get("VVUQ_TWIN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vvuq_twin" / "compiled"


def cache_enabled() -> bool:
    """False when ``$VVUQ_TWIN_COMPILE_CACHE`` is ``0``/``false``/``off``/``no``."""
    return os.environ.get("VVUQ_TWIN_COMPILE_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")
