"""A checkpointed stream of batches assimilated one by one into a particle posterior.

:class:`AssimilationRun` validates each batch (known variables, declared units, no NaN, times
strictly increasing and after the data already assimilated) *before* anything changes, runs
:func:`~vvuq_twin.assimilation.smc.smc_update` with a seed derived from ``(seed, batch index)``,
and after each completed update writes a checkpoint:

``<dir>/step_<index>/posterior.nc``  particles, weights, cumulative log-likelihoods (NetCDF)
``<dir>/step_<index>/data.nc``       all accepted data (NetCDF, dim ``time``)
``<dir>/step_<index>/meta.json``     seed, counters, reports, rejected batches, RNG state
``<dir>/rejected/batch_<index>.nc``  each rejected batch, kept as it arrived
``<dir>/LATEST``                     name of the last complete step (replaced atomically)

A process killed at any point resumes with :meth:`AssimilationRun.resume` from the last complete
step and, because every batch's randomness depends only on ``(seed, batch index)``, ends with a
posterior bitwise identical to an uninterrupted run.

``meta.json`` carries a SHA-256 checksum of every array in ``posterior.nc``, ``data.nc`` and each
rejected batch, and a hash of its own content (seed, counters, RNG state, options); ``resume``
verifies them all and raises :class:`~vvuq_twin.exceptions.CheckpointIntegrityError` naming the
file and array on any mismatch (flipped bytes, edited particles or weights, an edited seed, cut
data) instead of resuming to a wrong posterior. The checksums guard against accidents and naive
edits, not against a forger who recomputes them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import xarray as xr

from .._io import atomic_write_text, dataset_checksums, fsync_file, json_sha256, write_netcdf
from ..exceptions import CheckpointIntegrityError, DataValidationError, StreamDataError
from .smc import (
    LogDensity,
    ParticleCollapseError,
    ParticlePosterior,
    RefitFn,
    UpdateReport,
    concat_data,
    smc_update,
)

__all__ = ["StreamDataError", "AssimilationRun", "validate_batch", "batch_rng"]

_FORMAT = "vvuq_twin.assimilation.checkpoint/2"
_ENGINE = "h5netcdf"


def batch_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of batch ``index``: PCG64 seeded by ``SeedSequence([seed, index])``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def validate_batch(
    batch: xr.Dataset,
    *,
    variables: Mapping[str, str | None],
    time: str = "time",
    time_units: str | None = None,
    last_time: Any = None,
    index: int | None = None,
) -> dict[str, np.ndarray]:
    """Check a batch and return it as a dict of arrays (``time`` plus the variables).

    Parameters
    ----------
    batch : Dataset
        One dim ``time`` (coordinate of timestamps); data variables along it, each with an
        ``attrs["units"]`` string.
    variables : dict name -> units
        The variables the twin knows and their units (``None``: dimensionless, no check).
    time : str
        Name of the time dim/coordinate.
    time_units : str, optional
        Expected ``units`` attribute of the time coordinate.
    last_time : scalar, optional
        Time of the last assimilated observation: new times must be strictly later.
    index : int, optional
        Batch index, quoted in messages.

    Raises
    ------
    StreamDataError
        Saying what is wrong, where, and how to fix it.
    """
    where = f"Batch {index}" if index is not None else "Batch"
    if not isinstance(batch, xr.Dataset):
        raise StreamDataError(
            f"{where} must be an xarray.Dataset with dim {time!r}, got {type(batch).__name__}."
        )
    if time not in batch.dims or time not in batch.coords:
        raise StreamDataError(
            f"{where} needs a {time!r} dim with a coordinate of timestamps; got dims "
            f"{dict(batch.sizes)} and coords {list(batch.coords)}."
        )
    if batch.sizes[time] == 0:
        raise StreamDataError(f"{where} is empty (no {time!r} entries).")
    unknown = sorted(set(map(str, batch.data_vars)) - set(variables))
    if unknown:
        raise StreamDataError(
            f"{where} has variables {unknown} the twin does not know (known: {sorted(variables)}). "
            "Rename them or declare them in `variables`."
        )
    missing = sorted(set(variables) - set(map(str, batch.data_vars)))
    if missing:
        raise StreamDataError(f"{where} lacks the variables {missing} (expected {sorted(variables)}).")
    for name, units in variables.items():
        da = batch[name]
        if da.dims != (time,):
            raise StreamDataError(f"{where}: variable {name!r} must have dims ({time!r},), got {da.dims}.")
        got = da.attrs.get("units")
        if units is not None and got != units:
            raise StreamDataError(
                f"{where}: variable {name!r} has units {got!r} but the twin expects {units!r}. "
                "Convert the data (or set attrs['units']) before assimilating."
            )
    if time_units is not None and batch[time].attrs.get("units") != time_units:
        raise StreamDataError(
            f"{where}: the {time!r} coordinate has units {batch[time].attrs.get('units')!r} but the "
            f"twin expects {time_units!r}."
        )
    t = np.asarray(batch[time].values)
    if np.issubdtype(t.dtype, np.floating) and np.isnan(t).any():
        raise StreamDataError(f"{where}: the {time!r} coordinate has NaN at positions "
                              f"{np.flatnonzero(np.isnan(t))[:10].tolist()}.")
    if np.issubdtype(t.dtype, np.datetime64) and np.isnat(t).any():
        raise StreamDataError(f"{where}: the {time!r} coordinate has NaT values.")
    for name in variables:
        v = np.asarray(batch[name].values, dtype=float)
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise StreamDataError(
                f"{where}: variable {name!r} has {bad.size} NaN/inf value(s), first at {time}="
                f"{t[bad[0]]} (position {bad[0]}). Drop or impute them before assimilating."
            )
    order = np.flatnonzero(~(t[1:] > t[:-1]))
    if order.size:
        i = int(order[0]) + 1
        raise StreamDataError(
            f"{where}: timestamps are out of order: {time}[{i}]={t[i]} does not follow "
            f"{time}[{i - 1}]={t[i - 1]}. Sort the batch by time (and drop duplicates)."
        )
    if last_time is not None and not t[0] > last_time:
        raise StreamDataError(
            f"{where}: its first timestamp {t[0]} is not after the last assimilated time "
            f"{last_time}. Out-of-order or repeated data; only newer data can be assimilated."
        )
    out = {time: t}
    out.update({name: np.asarray(batch[name].values, dtype=float) for name in variables})
    return out


class AssimilationRun:
    """Assimilate a stream of batches into a static-parameter particle posterior.

    Parameters
    ----------
    posterior : ParticlePosterior or Dataset
        The starting posterior (prior draws, or a calibration posterior with chain/draw dims).
    log_likelihood, log_prior : callables
        See :func:`~vvuq_twin.assimilation.smc.smc_update`. They are not saved in checkpoints;
        pass the same ones to :meth:`resume`.
    variables : dict name -> units
        Observed variables of each batch and their units.
    seed : int
        Base seed; batch ``i`` uses :func:`batch_rng` ``(seed, i)``.
    time, time_units : str
        Time coordinate name and its expected units (optional).
    checkpoint_dir : path, optional
        Where to checkpoint after each batch (created if needed; must be empty or a checkpoint
        of this run kind).
    refit : callable, optional
        Full-refit fallback ``(all_data, rng) -> ParticlePosterior | dict``.
    on_invalid : {"raise", "record"}
        After recording a rejected batch: raise its error (default) or go on.
    past_data : dict of arrays, optional
        Data already contained in ``posterior`` (if it is a calibration posterior); needed by
        the MCMC moves, which target the posterior given all data.
    **smc_options
        Passed to :func:`smc_update` (``ess_target``, ``n_mcmc_steps``, ``collapse_ess``, ...).
    """

    def __init__(
        self,
        posterior: ParticlePosterior | xr.Dataset,
        log_likelihood: LogDensity,
        log_prior: LogDensity,
        *,
        variables: Mapping[str, str | None],
        seed: int,
        time: str = "time",
        time_units: str | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        refit: RefitFn | None = None,
        on_invalid: Literal["raise", "record"] = "raise",
        past_data: Mapping[str, np.ndarray] | None = None,
        **smc_options: Any,
    ) -> None:
        if isinstance(posterior, xr.Dataset):
            posterior = ParticlePosterior.from_dataset(posterior)
        if not isinstance(posterior, ParticlePosterior):
            raise TypeError(f"`posterior` must be a ParticlePosterior or Dataset, got {type(posterior).__name__}.")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative int (batch seeds derive from it), got {seed!r}.")
        if on_invalid not in ("raise", "record"):
            raise ValueError(f"`on_invalid` must be 'raise' or 'record', got {on_invalid!r}.")
        if not variables:
            raise ValueError("`variables` must name at least one observed variable and its units.")
        self.log_likelihood = log_likelihood
        self.log_prior = log_prior
        self.variables = dict(variables)
        self.seed = int(seed)
        self.time = time
        self.time_units = time_units
        self.refit = refit
        self.on_invalid = on_invalid
        self.smc_options = dict(smc_options)
        self.data: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in (past_data or {}).items()}
        if self.data:
            # the moves compare proposals with the particles' log-likelihood of all past data
            ll = np.asarray(log_likelihood(posterior.values, self.data), dtype=float)
            posterior = ParticlePosterior(posterior.values, posterior.log_weights, ll)
        self.reports: list[UpdateReport] = []
        self.rejected: list[dict[str, Any]] = []
        self.n_seen = 0
        self.rng_state: dict[str, Any] | None = None
        self.posterior = posterior
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if (self.checkpoint_dir / "LATEST").exists():
                raise FileExistsError(
                    f"{self.checkpoint_dir} already holds a checkpoint; continue it with "
                    "AssimilationRun.resume(...) or choose an empty directory."
                )

    # ------------------------------------------------------------------------------------------
    @property
    def last_time(self) -> Any:
        t = self.data.get(self.time)
        return None if t is None or len(t) == 0 else t[-1]

    def process(self, batch: xr.Dataset) -> UpdateReport:
        """Validate and assimilate one batch; checkpoint afterwards.

        A batch failing the data checks, or whose update collapses without a refit, is recorded
        as rejected (kept in :attr:`rejected` and in the checkpoint) and the posterior is left
        as it was; with ``on_invalid="raise"`` the error is then raised.
        """
        index = self.n_seen
        try:
            arrays = validate_batch(batch, variables=self.variables, time=self.time,
                                    time_units=self.time_units, last_time=self.last_time, index=index)
        except StreamDataError as err:
            return self._reject(index, batch, err)
        g = batch_rng(self.seed, index)
        try:
            new, report = smc_update(
                self.posterior, arrays, self.log_likelihood, self.log_prior,
                past_data=self.data or None, refit=self.refit, batch_index=index, rng=g,
                **self.smc_options,
            )
        except ParticleCollapseError as err:
            return self._reject(index, batch, err)
        report.time_range = [arrays[self.time][0], arrays[self.time][-1]]
        self.posterior = new
        self.data = concat_data([self.data, arrays])
        self.reports.append(report)
        self.n_seen += 1
        self.rng_state = g.bit_generator.state
        self._checkpoint()
        return report

    def run(self, batches: Iterable[xr.Dataset]) -> ParticlePosterior:
        """Process ``batches`` in order; returns the final posterior."""
        for b in batches:
            self.process(b)
        return self.posterior

    def _reject(self, index: int, batch: Any, err: Exception) -> UpdateReport:
        report = UpdateReport(batch_index=index, status="rejected",
                              reason=f"{type(err).__name__}: {err}")
        entry: dict[str, Any] = {"batch_index": index, "reason": report.reason, "file": None}
        self.n_seen += 1
        self.reports.append(report)
        self.rejected.append({**entry, "batch": batch})
        if self.checkpoint_dir is not None and isinstance(batch, xr.Dataset):
            rej = self.checkpoint_dir / "rejected"
            rej.mkdir(exist_ok=True)
            path = rej / f"batch_{index:06d}.nc"
            write_netcdf(batch, path, engine=_ENGINE)
            self.rejected[-1]["file"] = str(path.relative_to(self.checkpoint_dir))
            self.rejected[-1]["sha256"] = dataset_checksums(batch)
        self._checkpoint()
        if self.on_invalid == "raise":
            raise err
        return report

    # checkpointing ----------------------------------------------------------------------------
    def _data_dataset(self) -> xr.Dataset:
        if not self.data:
            return xr.Dataset()
        return xr.Dataset(
            {k: (self.time, v, {"units": self.variables[k]} if self.variables[k] else {})
             for k, v in self.data.items() if k != self.time},
            coords={self.time: self.data[self.time]},
        )

    def _checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        name = f"step_{self.n_seen:06d}"
        final = self.checkpoint_dir / name
        tmp = self.checkpoint_dir / (name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        post_ds, data_ds = self.posterior.to_dataset(), self._data_dataset()
        post_ds.to_netcdf(tmp / "posterior.nc", engine=_ENGINE)
        data_ds.to_netcdf(tmp / "data.nc", engine=_ENGINE)
        fsync_file(tmp / "posterior.nc")
        fsync_file(tmp / "data.nc")
        meta = {
            "format": _FORMAT,
            "seed": self.seed,
            "n_seen": self.n_seen,
            "variables": self.variables,
            "time": self.time,
            "time_units": self.time_units,
            "on_invalid": self.on_invalid,
            "smc_options": self.smc_options,
            "parameters": self.posterior.names,
            "reports": [r.to_dict() for r in self.reports],
            "rejected": [{k: v for k, v in r.items() if k != "batch"} for r in self.rejected],
            "rng_state": self.rng_state,
            "checksums": {"posterior.nc": dataset_checksums(post_ds),
                          "data.nc": dataset_checksums(data_ds)},
        }
        meta = json.loads(json.dumps(meta, default=_json_default))
        meta["meta_sha256"] = json_sha256(meta)
        with open(tmp / "meta.json", "w") as fh:
            json.dump(meta, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        previous = (self.checkpoint_dir / "LATEST").read_text().strip() if (self.checkpoint_dir / "LATEST").exists() else None
        atomic_write_text(self.checkpoint_dir / "LATEST", name)
        if previous and previous != name and (self.checkpoint_dir / previous).exists():
            shutil.rmtree(self.checkpoint_dir / previous)

    @classmethod
    def resume(
        cls,
        checkpoint_dir: str | os.PathLike,
        log_likelihood: LogDensity,
        log_prior: LogDensity,
        *,
        refit: RefitFn | None = None,
    ) -> "AssimilationRun":
        """Rebuild a run from its last complete checkpoint (the functions are not stored)."""
        root = Path(checkpoint_dir)
        latest = root / "LATEST"
        if not latest.exists():
            raise FileNotFoundError(
                f"No checkpoint in {root} (no LATEST file): nothing completed yet; start a new run."
            )
        step = root / latest.read_text().strip()
        meta = _read_meta(step)
        post_ds = _load_checked(step / "posterior.nc", meta["checksums"].get("posterior.nc"))
        posterior = ParticlePosterior.from_dataset(post_ds, names=meta["parameters"])
        data_ds = _load_checked(step / "data.nc", meta["checksums"].get("data.nc"))
        run = cls.__new__(cls)
        run.posterior = posterior
        run.log_likelihood, run.log_prior, run.refit = log_likelihood, log_prior, refit
        run.variables = meta["variables"]
        run.seed = int(meta["seed"])
        run.time, run.time_units = meta["time"], meta["time_units"]
        run.on_invalid = meta["on_invalid"]
        run.smc_options = meta["smc_options"]
        run.data = ({} if not data_ds.sizes else
                    {run.time: data_ds[run.time].values,
                     **{k: data_ds[k].values for k in run.variables}})
        run.reports = [UpdateReport.from_dict(r) for r in meta["reports"]]
        run.rejected = []
        for r in meta["rejected"]:
            batch = _load_checked(root / r["file"], r.get("sha256")) if r.get("file") else None
            run.rejected.append({**r, "batch": batch})
        run.n_seen = int(meta["n_seen"])
        run.rng_state = meta["rng_state"]
        run.checkpoint_dir = root
        return run

    def reports_dataset(self) -> xr.Dataset:
        """One row per processed batch (dim ``batch``): status, ESS, stages, reason."""
        r = self.reports
        return xr.Dataset(
            {
                "status": ("batch", np.array([x.status for x in r], dtype=str)),
                "n_obs": ("batch", np.array([x.n_obs for x in r], dtype=int)),
                "ess_one_step": ("batch", np.array([x.ess_one_step for x in r], dtype=float)),
                "ess_final": ("batch", np.array([x.ess_final for x in r], dtype=float)),
                "n_stages": ("batch", np.array([len(x.phis) for x in r], dtype=int)),
                "reason": ("batch", np.array([x.reason for x in r], dtype=str)),
            },
            coords={"batch": np.array([x.batch_index for x in r], dtype=int)},
        )


def _read_meta(step: Path) -> dict[str, Any]:
    """Read and verify ``meta.json`` of a checkpoint step."""
    path = step / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointIntegrityError(f"{path} is missing: the checkpoint is incomplete.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointIntegrityError(f"{path} is not valid JSON ({exc}): the checkpoint is "
                                       "corrupt.") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointIntegrityError(
            f"{step} is not a vvuq_twin assimilation checkpoint of format {_FORMAT!r} (got "
            f"{got!r}); checkpoints without checksums cannot be resumed safely.")
    stored = meta.pop("meta_sha256", None)
    if stored is None or json_sha256(meta) != stored:
        raise CheckpointIntegrityError(
            f"{path} was edited: its content (seed, counters, RNG state, options, reports, "
            "checksums) does not match its stored hash. Resume from an intact checkpoint or "
            "start again.")
    if not isinstance(meta.get("checksums"), dict):
        raise CheckpointIntegrityError(f"{path} has no array checksums.")
    return meta


def _load_checked(path: Path, checksums: Mapping[str, str] | None) -> xr.Dataset:
    """Load a checkpoint NetCDF file and verify the checksum of every array."""
    if checksums is None:
        raise CheckpointIntegrityError(f"{path}: no checksums recorded for this file.")
    try:
        ds = xr.load_dataset(path, engine=_ENGINE)
    except FileNotFoundError as exc:
        raise CheckpointIntegrityError(f"{path} is missing: the checkpoint is incomplete.") from exc
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, ...
        raise CheckpointIntegrityError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}): the checkpoint is corrupt.") from exc
    now = dataset_checksums(ds)
    bad = sorted(k for k in set(now) | set(checksums) if now.get(k) != checksums.get(k))
    if bad:
        raise CheckpointIntegrityError(
            f"{path}: array(s) {bad} do not match the checksums stored in meta.json (edited or "
            "corrupted). Resume from an intact checkpoint or start again.")
    return ds


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"Cannot store {type(o).__name__} in checkpoint metadata.")
