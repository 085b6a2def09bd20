"""The results of a calibration: InferenceData + hashes + diagnostics + ledger, saved as NetCDF."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az


from ..exceptions import DataValidationError, LedgerIntegrityError, ResultFileError
from .diagnostics import Diagnostics
from .ledger import Ledger

__all__ = ["TwinResult", "load_result", "verify_result_file", "ResultFileError", "data_groups",
           "full_posterior", "LATENT_GROUP"]

from ._groups import LATENT_GROUP, add_latent_group, data_groups, full_posterior  # noqa: E402 - re-exported


@dataclass
class TwinResult:
    """A calibrated twin.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (parameters and latent variables), ``posterior_predictive`` (``eta``
        simulator output, ``delta`` discrepancy, ``zeta`` true process, ``y`` observations),
        ``log_likelihood`` (pointwise ``y``, so ``az.loo(res.idata)`` works),
        ``observed_data`` (``y`` only), ``constant_data`` (inputs ``x``, ``y_sd``, unit
        labels), ``sample_stats``; PyMC's auxiliary variables (``*_rotated_`` of a latent GP)
        live in ``latent_posterior``, not in the posterior.
    twin : Twin or None
        The declaration (None after :func:`load_result` without ``twin=``).
    data : TwinData or None
        The calibration data.
    declaration_hash, data_hash : str
    diagnostics : Diagnostics or None
    ledger : Ledger
    info : dict
        Sampler, seed, timings, package versions.
    """

    idata: az.InferenceData
    twin: Any
    data: Any
    declaration_hash: str
    data_hash: str
    diagnostics: Diagnostics | None = None
    ledger: Ledger = field(default_factory=Ledger)
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        name = getattr(self.twin, "name", "?") if self.twin is not None else "(no twin attached)"
        post = self.idata.posterior
        nc, nd = int(post.sizes.get("chain", 0)), int(post.sizes.get("draw", 0))
        params = ", ".join(f"{k}{list(post[k].shape[2:]) if post[k].ndim > 2 else ''}"
                           for k in list(post.data_vars)[:8])
        more = f", ... ({len(post.data_vars)} in all)" if len(post.data_vars) > 8 else ""
        diag = "no diagnostics" if self.diagnostics is None else (
            "diagnostics PASS" if self.diagnostics.passed else
            "diagnostics FAIL: " + "; ".join(self.diagnostics.failures))
        n_obs = getattr(self.data, "n", None)
        t = self.info.get("total_time_s")
        return (f"TwinResult(twin={name!r}, sampler={self.info.get('sampler', '?')}, {nc} chains x "
                f"{nd} draws, {'' if n_obs is None else f'{n_obs} obs, '}"
                f"declaration {self.declaration_hash[:12]}, data {self.data_hash[:12]}"
                f"{'' if t is None else f', {t:.1f} s'})\n"
                f"  parameters: {params}{more}\n  groups: {', '.join(self.idata.groups())}\n  {diag}")

    def compute_log_likelihood(self) -> "TwinResult":
        """Add (or recompute) the pointwise ``log_likelihood`` group; returns ``self``.

        Closed form for Gaussian / Student-t / log-normal observations (no compilation), see
        :mod:`vvuq_twin.inference.loglik`. Needs the twin and data attached.
        """
        if self.twin is None or self.data is None:
            raise DataValidationError(
                "compute_log_likelihood needs the twin and data: load the result with "
                "load_result(path, twin=..., data=...)."
            )
        from .loglik import pointwise_log_likelihood

        ll = pointwise_log_likelihood(self.twin, self.data, self.idata)
        if "log_likelihood" in self.idata.groups():
            self.idata.log_likelihood = ll
        else:
            self.idata.add_groups({"log_likelihood": ll})
        return self

    @property
    def posterior(self):
        """The posterior group (xarray Dataset)."""
        return self.idata.posterior

    @property
    def posterior_predictive(self):
        """The posterior predictive group (eta, delta, zeta, y)."""
        return self.idata.posterior_predictive

    def summary(self, var_names: list[str] | None = None):
        """ArviZ summary table of the calibration parameters (a pandas DataFrame)."""
        if var_names is None and self.twin is not None:
            var_names = [v for v in self.twin.parameter_names if v in self.posterior]
            hyper = set(self.twin.hyperparameter_names())  # the declaration names them
            var_names += [v for v in self.posterior.data_vars if v in hyper]
        return az.summary(self.idata, var_names=var_names)

    def to_netcdf(self, path: str | Path) -> Path:
        """Save as one NetCDF file (hashes, diagnostics, ledger and info in the attributes).

        The file is written atomically (temporary file in the same directory, fsync,
        ``os.replace``): an existing file at ``path`` is replaced only by a complete new one.
        A SHA-256 checksum of every variable of every group (posterior draws, observed data,
        ...) and of the vvuq_twin attributes is stored with it and verified by
        :func:`load_result`.
        """
        from .._io import write_netcdf

        path = Path(path)
        attrs = {
            "vvuq_twin_declaration_hash": self.declaration_hash,
            "vvuq_twin_data_hash": self.data_hash,
            "vvuq_twin_diagnostics": "" if self.diagnostics is None else self.diagnostics.to_json(),
            "vvuq_twin_ledger": self.ledger.to_json(),
            "vvuq_twin_info": json.dumps(self.info, default=str),
            "vvuq_twin_declaration": json.dumps(self.twin.spec(), default=str) if self.twin is not None else "",
        }
        idata = self.idata.copy()
        from .smc import is_raw_smc_stats, smc_sample_stats

        if is_raw_smc_stats(idata.get("sample_stats", None)):  # PyMC's ragged SMC stats
            idata.sample_stats = smc_sample_stats(idata.sample_stats, nchain=int(idata.posterior.sizes["chain"]))
        if self.diagnostics is not None and len(self.diagnostics.table.data_vars):
            idata = _with_group(idata, DIAGNOSTICS_GROUP, self.diagnostics.table)  # checksummed too
        attrs[INTEGRITY_ATTR] = _integrity_record(idata, attrs)
        idata.posterior.attrs.update(attrs)
        write_netcdf(idata, path, engine="h5netcdf")
        return path


#: attribute holding the checksums of a saved result
INTEGRITY_ATTR = "vvuq_twin_integrity"
#: format tag of the integrity record
RESULT_FORMAT = "vvuq_twin.result/2"
#: attributes every complete result file holds (in its posterior group)
REQUIRED_ATTRS = (
    "vvuq_twin_declaration_hash", "vvuq_twin_data_hash", "vvuq_twin_diagnostics",
    "vvuq_twin_ledger", "vvuq_twin_info", "vvuq_twin_declaration", INTEGRITY_ATTR,
)


def _integrity_record(idata: az.InferenceData, attrs: dict[str, str]) -> str:
    from .._io import dataset_checksums, json_sha256

    groups = {g: dataset_checksums(idata[g]) for g in idata.groups()}
    return json.dumps({
        "format": RESULT_FORMAT,
        "groups": groups,
        "attrs_sha256": json_sha256({k: attrs[k] for k in sorted(attrs) if k != INTEGRITY_ATTR}),
    }, sort_keys=True)


def _read_result_file(path: Path) -> az.InferenceData:
    """Open a result file, turning HDF5/NetCDF failures into a named ResultFileError."""
    if not path.exists():
        raise FileNotFoundError(f"No result file at {path}.")
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
        idata.load() if hasattr(idata, "load") else None
    except Exception as exc:  # noqa: BLE001 - h5py/netCDF raise OSError, KeyError, ...
        raise ResultFileError(
            f"{path}: cannot be read as a NetCDF result file ({type(exc).__name__}: {exc}). It is "
            "truncated, corrupt or not a vvuq_twin result; recompute it or restore a good copy."
        ) from exc
    return idata


def verify_result_file(idata: az.InferenceData, path: str | Path) -> dict[str, str]:
    """Check that a loaded result is complete and matches its stored checksums.

    Returns the vvuq_twin attributes. Raises :class:`~vvuq_twin.exceptions.ResultFileError`
    naming the file and what is missing or does not match.
    """
    from .._io import dataset_checksums, json_sha256

    groups = list(idata.groups())
    if "posterior" not in groups:
        raise ResultFileError(
            f"{path}: incomplete result file: group 'posterior' is missing (groups present: "
            f"{groups}). The write was interrupted or the file is not a vvuq_twin result."
        )
    attrs = {k: v for k, v in idata.posterior.attrs.items() if str(k).startswith("vvuq_twin_")}
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        hint = (" It was written by a vvuq_twin version without checksums: load it with that "
                "version and save it again, or recompute it." if missing == [INTEGRITY_ATTR]
                else " The write was interrupted or the file is not a vvuq_twin result.")
        raise ResultFileError(f"{path}: incomplete result file: attribute(s) {missing} missing "
                              f"from group 'posterior'.{hint}")
    try:
        record = json.loads(attrs[INTEGRITY_ATTR])
        stored_groups = dict(record["groups"])
        fmt = record["format"]
    except (TypeError, ValueError, KeyError) as exc:
        raise ResultFileError(f"{path}: attribute {INTEGRITY_ATTR!r} is malformed ({exc}).") from exc
    if fmt != RESULT_FORMAT:
        raise ResultFileError(f"{path}: unknown result format {fmt!r} (expected {RESULT_FORMAT!r}).")
    absent = [g for g in stored_groups if g not in groups]
    if absent:
        raise ResultFileError(
            f"{path}: incomplete result file: group(s) {absent} written with it are missing "
            f"(present: {groups})."
        )
    extra = [g for g in groups if g not in stored_groups]
    if extra:
        raise ResultFileError(f"{path}: group(s) {extra} were added after the file was written "
                              "(not covered by its checksums).")
    problems = []
    for g, stored in stored_groups.items():
        now = dataset_checksums(idata[g])
        for name in sorted(set(stored) | set(now)):
            if name not in now:
                problems.append(f"{g}[{name!r}] missing")
            elif name not in stored:
                problems.append(f"{g}[{name!r}] added")
            elif now[name] != stored[name]:
                problems.append(f"{g}[{name!r}] changed")
    if json_sha256({k: attrs[k] for k in sorted(attrs) if k != INTEGRITY_ATTR}) != record.get("attrs_sha256"):
        problems.append("vvuq_twin attributes (hashes, diagnostics, ledger, info) changed")
    if problems:
        raise ResultFileError(
            f"{path}: content does not match the SHA-256 checksums stored when it was written: "
            f"{'; '.join(problems[:10])}{' ...' if len(problems) > 10 else ''}. The file was edited "
            "or corrupted; recompute it or restore a good copy."
        )
    return attrs


def load_result(path: str | Path, *, twin: Any = None, data: Any = None) -> TwinResult:
    """Load a :class:`TwinResult` saved with :meth:`TwinResult.to_netcdf`.

    Parameters
    ----------
    twin : Twin, optional
        The declaration; its hash must match the stored one (so that prediction and V&V use
        the model the draws came from).
    data : TwinData, optional
        The calibration data; its hash must match.

    Raises
    ------
    ResultFileError
        The file is truncated or corrupt, lacks a group or attribute a complete result has, or
        its content (posterior draws, observed data, any other group, the hashes, diagnostics,
        ledger or info) does not match the SHA-256 checksums stored when it was written.
    LedgerIntegrityError
        The stored ledger's hash chain is broken.
    DataValidationError
        ``twin`` or ``data`` do not match the stored hashes.
    """
    path = Path(path)
    idata = _read_result_file(path)
    attrs = verify_result_file(idata, path)
    dh = attrs.get("vvuq_twin_declaration_hash", "")
    ah = attrs.get("vvuq_twin_data_hash", "")
    if twin is not None and twin.hash != dh:
        raise DataValidationError(
            f"The twin passed to load_result has hash {twin.hash[:12]} but the results were "
            f"computed with declaration {dh[:12]}. Pass the declaration used for calibration, or "
            "recalibrate."
        )
    if data is not None and data.hash != ah:
        raise DataValidationError(
            f"The data passed to load_result have hash {data.hash[:12]} but the results were "
            f"computed on data {ah[:12]}."
        )
    diag_json = attrs.get("vvuq_twin_diagnostics", "")
    diagnostics = None
    if diag_json:
        import xarray as xr

        from .diagnostics import Thresholds

        try:
            d = json.loads(diag_json)
            table = idata[DIAGNOSTICS_GROUP].load() if DIAGNOSTICS_GROUP in idata.groups() else xr.Dataset()
            diagnostics = Diagnostics(table=table, checks=d["checks"], sampler=d["sampler"],
                                      thresholds=Thresholds(**d["thresholds"]))
        except (TypeError, ValueError, KeyError) as exc:
            raise ResultFileError(f"{path}: attribute 'vvuq_twin_diagnostics' is malformed "
                                  f"({type(exc).__name__}: {exc}).") from exc
    if DIAGNOSTICS_GROUP in idata.groups():
        idata = _with_group(idata, DIAGNOSTICS_GROUP, None)
    try:
        ledger = Ledger.from_json(attrs.get("vvuq_twin_ledger", "[]") or "[]")
    except LedgerIntegrityError as exc:
        raise LedgerIntegrityError(f"{path}: {exc}") from exc
    try:
        info = json.loads(attrs.get("vvuq_twin_info", "{}") or "{}")
    except ValueError as exc:
        raise ResultFileError(f"{path}: attribute 'vvuq_twin_info' is malformed ({exc}).") from exc
    for k in list(attrs):
        if k.startswith("vvuq_twin_"):
            del idata.posterior.attrs[k]
    if twin is not None and twin.has_auto_parametrization:
        # the choice made at calibration for centered="auto" blocks, as recorded
        if "parametrization" not in info:
            raise ResultFileError(f"{path}: the twin has centered='auto' parameters but the file "
                                  "records no parametrisation choice (info['parametrization']).")
        twin = twin.with_parametrization(info["parametrization"])
    return TwinResult(idata=idata, twin=twin, data=data, declaration_hash=dh, data_hash=ah,
                      diagnostics=diagnostics, ledger=ledger, info=info)




#: group of the saved NetCDF file holding the diagnostics table (restored by load_result)
DIAGNOSTICS_GROUP = "vvuq_twin_diagnostics"


def _with_group(idata: az.InferenceData, name: str, ds: Any) -> az.InferenceData:
    """A copy of ``idata`` with group ``name`` set to ``ds`` (or removed when ``ds`` is None)."""
    import warnings

    groups = {g: idata[g] for g in idata.groups() if g != name}
    if ds is not None:
        groups[name] = ds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return az.InferenceData(**groups)
