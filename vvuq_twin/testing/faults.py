"""Fault injection: kills during writes, corrupted files, forged ledgers, hostile suites.

Used by the integrity tests and by ``python -m benchmarks faults``. Each ``*_faults`` function
tries a list of attacks or accidents and returns a plain dict with what was tried and what was
detected, so a run reports e.g. "forged ledger entries detected 11 / 11".

* :func:`kill_during_writes` - a forked process writes a result, a prediction, a summary and a
  ledger over and over and is killed with SIGKILL at ``n_kills`` moments spread over its write
  cycle; every file at a final path must then be absent, the old complete file or the new one.
* :func:`result_file_faults` - truncations, flipped bytes inside the stored draws, naive edits
  (theta + 1, y x 10, diagnostics set to pass, a ledger entry flipped, a group removed) and
  random byte flips of a saved :class:`~vvuq_twin.inference.results.TwinResult`.
* :func:`checkpoint_faults` - the same for an assimilation checkpoint (particles x 3, weights
  zeroed, seed edited, past data cut, ...).
* :func:`ledger_faults` - forged, edited, removed, reordered entries and malformed JSON.
* :func:`suite_faults` - suites calling ``os:system``, ``subprocess:run``, ``builtins:exec``, a
  module planted in a parent directory, ...
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

__all__ = [
    "synthetic_result",
    "write_bundle",
    "kill_during_writes",
    "result_file_faults",
    "checkpoint_faults",
    "ledger_faults",
    "suite_faults",
    "run_all",
]


# ------------------------------------------------------------------------------------ inputs
def synthetic_result(seed: int = 0, n_draws: int = 400, chains: int = 2):
    """A complete :class:`TwinResult` of the Brynjarsdottir-O'Hagan twin without sampling.

    Draws are N(0.65 + 0.01 seed, 0.01^2) (a stand-in posterior: only file integrity is under
    test); groups posterior, posterior_predictive, sample_stats and observed_data; a ledger with
    three entries.
    """
    import arviz as az

    from ..inference.diagnostics import Diagnostics, Thresholds
    from ..inference.ledger import Ledger
    from ..inference.results import TwinResult
    from .problems_core import bo2014_data, bo2014_twin

    twin, data = bo2014_twin(), bo2014_data(seed=1)
    rng = np.random.default_rng(seed)
    coords = {"chain": np.arange(chains), "draw": np.arange(n_draws), "obs": data.obs}
    theta = rng.normal(0.65 + 0.01 * seed, 0.01, (chains, n_draws))
    ls_name = next(n for n in twin.hyperparameter_names() if n.endswith("_ls"))  # the declaration's
    post = xr.Dataset({"theta": (("chain", "draw"), theta),
                       ls_name: (("chain", "draw"), rng.lognormal(0, 0.3, (chains, n_draws)))},
                      coords={k: coords[k] for k in ("chain", "draw")})
    eta = theta[..., None] * data.x[:, 0]
    pp = xr.Dataset({"eta": (("chain", "draw", "obs"), eta),
                     "y": (("chain", "draw", "obs"), eta + rng.normal(0, 0.01, eta.shape))},
                    coords=coords)
    stats = xr.Dataset({"diverging": (("chain", "draw"), rng.random((chains, n_draws)) < 0.01),
                        "step_size": (("chain", "draw"), np.full((chains, n_draws), 0.3))},
                       coords={k: coords[k] for k in ("chain", "draw")})
    idata = az.InferenceData(posterior=post, posterior_predictive=pp, sample_stats=stats,
                             observed_data=data.to_dataset())
    diags = Diagnostics(table=xr.Dataset(), sampler="nutpie", thresholds=Thresholds(),
                        checks={"r_hat": {"value": 1.2, "threshold": 1.01, "passed": False},
                                "divergences": {"value": 3.0, "threshold": 0.0, "passed": False}})
    led = Ledger()
    led.record("calibration", "sampler_diagnostics", twin=twin, data_hash=data.hash, passed=False,
               result={"r_hat": 1.2, "seed": seed})
    led.record("validation", "coverage_90", twin=twin, data_hash=data.hash, passed=False,
               result={"coverage": 0.61, "threshold": 0.8})
    led.record("verification", "mms_order", twin=twin, data_hash=data.hash, passed=True,
               result={"order": 3.98})
    return TwinResult(idata=idata, twin=twin, data=data, declaration_hash=twin.hash,
                      data_hash=data.hash, diagnostics=diags, ledger=led,
                      info={"sampler": "nutpie", "seed": seed})


#: the files :func:`write_bundle` writes (``new_summary.json`` does not exist beforehand)
BUNDLE_FILES = ("result.nc", "prediction.nc", "summary.json", "ledger.json", "new_summary.json")


def _bundle(seed: int) -> dict[str, Any]:
    res = synthetic_result(seed)
    rng = np.random.default_rng(100 + seed)
    pred = xr.Dataset({"zeta": (("chain", "draw", "obs"), rng.normal(seed, 1, (2, 400, 13)))},
                      coords={"obs": np.arange(13)})
    summary = json.dumps({"version": seed, "theta_mean": float(res.posterior["theta"].mean()),
                          "padding": rng.normal(size=20000).tolist()})
    from datetime import datetime, timezone

    from ..report import Report

    report = Report(f"Fault-injection report v{seed}", seed=seed, repo_dir=tempfile.gettempdir(),
                    created=datetime(2026, 1, 1, tzinfo=timezone.utc))
    report.add_text("Results", f"version {seed}\n\n" + "padding " * 20000)
    stamp = "2026-01-01T00:00:00Z"
    return {"seed": seed, "result": res, "prediction": pred, "summary": summary,
            "report": report, "report/report.html": report.to_html(stamp),
            "report/summary.json": json.dumps(report.to_json_dict(stamp), indent=2,
                                              ensure_ascii=False) + "\n"}


def write_bundle(out: Path, bundle: dict[str, Any]) -> None:
    """Write one version of every output through the library's writers (all atomic)."""
    from .._io import atomic_write_text, write_netcdf

    bundle["result"].to_netcdf(out / "result.nc")
    write_netcdf(bundle["prediction"], out / "prediction.nc")
    atomic_write_text(out / "summary.json", bundle["summary"])
    bundle["result"].ledger.save(out / "ledger.json")
    atomic_write_text(out / "new_summary.json", bundle["summary"])
    bundle["report"].write(out / "report")  # report.html + summary.json, each atomic


def _classify(out: Path, name: str, bundles: list[dict[str, Any]]) -> str:
    """'absent', 'v<seed>' (a complete known version) or 'BAD: ...'."""
    from ..inference.ledger import Ledger
    from ..inference.results import load_result

    path = out / name
    if not path.exists():
        return "absent"
    try:
        if name == "result.nc":
            theta = load_result(path).posterior["theta"].values
            hits = [b for b in bundles if np.array_equal(theta, b["result"].posterior["theta"].values)]
        elif name == "prediction.nc":
            z = xr.load_dataset(path, engine="h5netcdf")["zeta"].values
            hits = [b for b in bundles if np.array_equal(z, b["prediction"]["zeta"].values)]
        elif name == "ledger.json":
            entries = Ledger.load(path).entries
            hits = [b for b in bundles if entries == b["result"].ledger.entries]
        else:
            text = path.read_text()
            hits = [b for b in bundles if text == b["summary"]]
    except Exception as exc:  # noqa: BLE001 - any failure to read a final file is the bug
        return f"BAD: {type(exc).__name__}: {exc}"[:300]
    return f"v{hits[0]['seed']}" if hits else "BAD: complete but unknown content"


def _writer_loop(out: str, bundles: list[dict[str, Any]]) -> None:  # pragma: no cover - child
    for i in range(100_000):
        write_bundle(Path(out), bundles[i % len(bundles)])
    os._exit(0)


def kill_during_writes(out: str | Path | None = None, n_kills: int = 12,
                       seed: int = 0) -> dict[str, Any]:
    """SIGKILL a process that is writing outputs at ``n_kills`` moments; check every final file.

    The old version (seed 1) is written first, except ``new_summary.json``; a forked child then
    writes versions 2, 1, 2, ... until it is killed ``t_k`` seconds after it started, with
    ``t_k`` spread over about three write cycles (jittered by ``seed``). After each kill every file
    at a final path must be absent (only a file that never existed), or a complete known
    version. Kills that left a temporary file behind landed inside a write.

    Returns
    -------
    dict
        ``kills``, ``survived`` (kills after which every final file was whole),
        ``inside_write`` (kills that interrupted a write, by file), ``states`` (per kill).
    """
    import multiprocessing as mp

    own = out is None
    out = Path(tempfile.mkdtemp(prefix="vvuq_kill_")) if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old, new = _bundle(1), _bundle(2)
    t0 = time.perf_counter()
    write_bundle(out, old)
    cycle = time.perf_counter() - t0
    (out / "new_summary.json").unlink()
    rng = np.random.default_rng(seed)
    delays = cycle * (0.01 + 3.0 * (np.arange(n_kills) + rng.uniform(0, 1, n_kills)) / n_kills)
    ctx = mp.get_context("fork")
    states, inside, survived = [], {}, 0
    for k, delay in enumerate(delays):
        proc = ctx.Process(target=_writer_loop, args=(str(out), [new, old]), daemon=True)
        proc.start()
        time.sleep(float(delay))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        temps = sorted(p.name for p in out.glob(f".*.tmp-{proc.pid}-*"))
        for t in temps:
            stem = t[1:t.index(".tmp-")]
            inside[stem] = inside.get(stem, 0) + 1
        finals = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        state = {name: _classify(out, name, [old, new]) for name in BUNDLE_FILES}
        rep_dir = out / "report"
        for p in sorted(rep_dir.glob(".*.tmp-*")):  # interrupted report writes
            inside[f"report/{p.name[1:p.name.index('.tmp-')]}"] = \
                inside.get(f"report/{p.name[1:p.name.index('.tmp-')]}", 0) + 1
            p.unlink()
        for name in ("report/report.html", "report/summary.json"):
            text = (out / name).read_text() if (out / name).exists() else None
            state[name] = ("absent" if text is None else next(
                (f"v{b['seed']}" for b in (old, new) if text == b[name]),
                "BAD: incomplete or unknown report"))
        unexpected = [f for f in finals if f not in BUNDLE_FILES and f != "report"]
        ok = (not unexpected and all(not s.startswith("BAD") for s in state.values())
              and state["result.nc"] != "absent")
        survived += ok
        states.append({"kill": k, "after_s": round(float(delay), 4), "exit": proc.exitcode,
                       "interrupted": [t[1:t.index(".tmp-")] for t in temps],
                       "files": state, "ok": ok})
    for p in out.glob(".*.tmp-*"):
        p.unlink()
    if own:
        shutil.rmtree(out, ignore_errors=True)
    return {"kills": n_kills, "survived": survived, "write_cycle_s": round(cycle, 4),
            "kills_inside_a_write": sum(bool(s["interrupted"]) for s in states),
            "inside_write_by_file": inside, "states": states}


# ------------------------------------------------------------------------------ result files
def _h5_edit(fn: Callable[[Any], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        import h5py

        with h5py.File(path, "r+") as f:
            fn(f)
    return edit


def _set_attr(group: str, key: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def fn(f):
        a = f[group].attrs[key]
        f[group].attrs[key] = change(a.decode() if isinstance(a, bytes) else str(a))
    return _h5_edit(fn)


def _diagnostics_pass(text: str) -> str:
    d = json.loads(text)
    for c in d["checks"].values():
        c["passed"] = True
    return json.dumps(d)


def _ledger_flip(text: str) -> str:
    d = json.loads(text)
    d["entries"][1]["passed"] = True
    return json.dumps(d)


def _flip_in_dataset(var: str, where: float = 0.5) -> Callable[[Path], None]:
    """Flip one byte inside the stored bytes of an HDF5 dataset (compressed or not)."""
    def edit(path: Path) -> None:
        import h5py

        with h5py.File(path, "r") as f:
            ds = f[var]
            if ds.chunks is None:
                off, size = ds.id.get_offset(), ds.id.get_storage_size()
            else:
                info = ds.id.get_chunk_info(0)
                off, size = info.byte_offset, info.size
        _flip_bytes(path, [int(off + where * max(size - 1, 0))])
    return edit


def _flip_bytes(path: Path, positions: list[int]) -> None:
    b = bytearray(path.read_bytes())
    for p in positions:
        b[p] ^= 0xFF
    path.write_bytes(bytes(b))


def _truncate(frac: float) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        b = path.read_bytes()
        path.write_bytes(b[: int(len(b) * frac)])
    return edit


def _same_result(a, b) -> bool:
    return all(a.idata[g].equals(b.idata[g]) for g in a.idata.groups()) and \
        a.ledger.entries == b.ledger.entries and a.info == b.info


def result_file_faults(workdir: str | Path | None = None, n_random_flips: int = 8) -> dict[str, Any]:
    """Corrupt a saved result in many ways; count those :func:`load_result` refuses by name.

    Targeted faults (truncations, flips inside the stored draws and data, naive edits) must all
    be detected. Random byte flips anywhere in the file are reported apart: each is detected,
    or loads with content identical to the original (it hit unused bytes); none may load a
    changed result.
    """
    from ..exceptions import IntegrityError
    from ..inference.results import load_result

    work = Path(tempfile.mkdtemp(prefix="vvuq_res_")) if workdir is None else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    res = synthetic_result(3)
    good = work / "good.nc"
    res.to_netcdf(good)
    ref = load_result(good, twin=res.twin, data=res.data)
    faults: dict[str, Callable[[Path], None]] = {
        "truncated to 10%": _truncate(0.10),
        "truncated to 50%": _truncate(0.50),
        "truncated to 90%": _truncate(0.90),
        "truncated to 99.9%": _truncate(0.999),
        "byte flipped in posterior/theta": _flip_in_dataset("posterior/theta"),
        "byte flipped in observed_data/y": _flip_in_dataset("observed_data/y"),
        "byte flipped in posterior_predictive/y": _flip_in_dataset("posterior_predictive/y", 0.9),
        "theta + 1": _h5_edit(lambda f: f["posterior/theta"].__setitem__(
            Ellipsis, f["posterior/theta"][...] + 1)),
        "one draw of theta changed": _h5_edit(lambda f: f["posterior/theta"].__setitem__(
            (0, 5), 0.0)),
        "y x 10": _h5_edit(lambda f: f["observed_data/y"].__setitem__(
            Ellipsis, f["observed_data/y"][...] * 10)),
        "diagnostics set to pass": _set_attr("posterior", "vvuq_twin_diagnostics", _diagnostics_pass),
        "ledger entry set to pass": _set_attr("posterior", "vvuq_twin_ledger", _ledger_flip),
        "data hash replaced": _set_attr("posterior", "vvuq_twin_data_hash", lambda s: "0" * 64),
        "group sample_stats removed": _h5_edit(lambda f: f.__delitem__("sample_stats")),
        "group observed_data removed": _h5_edit(lambda f: f.__delitem__("observed_data")),
        "checksum attribute removed": _h5_edit(
            lambda f: f["posterior"].attrs.__delitem__("vvuq_twin_integrity")),
        "not a NetCDF file": lambda p: p.write_bytes(b"not an hdf5 file" * 100),
        "empty file": lambda p: p.write_bytes(b""),
    }
    rows = []
    for name, corrupt in faults.items():
        p = work / "bad.nc"
        shutil.copyfile(good, p)
        corrupt(p)
        try:
            load_result(p, twin=res.twin, data=res.data)
            outcome = "LOADED"
        except IntegrityError as exc:
            outcome = f"detected: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - an unnamed error is a failure too
            outcome = f"UNNAMED {type(exc).__name__}: {exc}"[:200]
        rows.append({"fault": name, "outcome": outcome})
    size = good.stat().st_size
    rng = np.random.default_rng(7)
    flips = {"tried": 0, "detected": 0, "identical": 0, "silently_wrong": 0}
    for pos in sorted(rng.choice(size, n_random_flips, replace=False).tolist()):
        p = work / "flip.nc"
        shutil.copyfile(good, p)
        _flip_bytes(p, [int(pos)])
        flips["tried"] += 1
        try:
            back = load_result(p, twin=res.twin, data=res.data)
        except IntegrityError:
            flips["detected"] += 1
            continue
        except Exception:  # noqa: BLE001
            flips["silently_wrong"] += 1  # unnamed error: counted against us
            continue
        flips["identical" if _same_result(back, ref) else "silently_wrong"] += 1
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    detected = sum(r["outcome"].startswith("detected") for r in rows)
    return {"tried": len(rows), "detected": detected, "faults": rows, "random_flips": flips}


# ------------------------------------------------------------------------------- checkpoints
def _stream_checkpoint(root: Path):
    from ..assimilation import AssimilationRun, ParticlePosterior
    from .problems_assim import ExponentialDecay

    model = ExponentialDecay()
    batches = model.simulate(4, 5, rng=1)
    bad = batches[2].copy(deep=True)
    bad["y"][1] = np.nan
    run = AssimilationRun(ParticlePosterior(model.sample_prior(300, rng=0)), model.log_likelihood,
                          model.log_prior, variables={"y": "mm"}, time_units="s", seed=3,
                          checkpoint_dir=root, on_invalid="record", n_mcmc_steps=2)
    for b in [batches[0], batches[1], bad, batches[2]]:
        run.process(b)
    return model, run


def _json_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(step: Path) -> None:
        p = step / "meta.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d, indent=1))
    return edit


def _nc_rewrite(file: str, fn: Callable[[xr.Dataset], xr.Dataset]) -> Callable[[Path], None]:
    def edit(step: Path) -> None:
        p = step / file
        ds = xr.load_dataset(p, engine="h5netcdf")
        fn(ds).to_netcdf(p, engine="h5netcdf")
    return edit


def checkpoint_faults(workdir: str | Path | None = None) -> dict[str, Any]:
    """Corrupt an assimilation checkpoint in many ways; count those ``resume`` refuses by name."""
    from ..assimilation import AssimilationRun
    from ..exceptions import IntegrityError

    work = Path(tempfile.mkdtemp(prefix="vvuq_ckpt_")) if workdir is None else Path(workdir)
    model, _ = _stream_checkpoint(work / "good")
    step_name = (work / "good" / "LATEST").read_text().strip()

    def in_step(fn):
        return lambda root: fn(root / step_name)

    def mul_a(ds):
        ds["a"] = ds["a"] * 3
        return ds

    def zero_w(ds):
        ds["log_weight"] = ds["log_weight"] * 0
        return ds

    def flip_rejected(root):
        (p,) = list((root / "rejected").glob("*.nc"))
        ds = xr.load_dataset(p, engine="h5netcdf")
        ds["y"] = ds["y"].fillna(1.0)
        ds.to_netcdf(p, engine="h5netcdf")

    faults: dict[str, Callable[[Path], None]] = {
        "particle values x 3": in_step(_nc_rewrite("posterior.nc", mul_a)),
        "weights zeroed": in_step(_nc_rewrite("posterior.nc", zero_w)),
        "byte flipped in particles": in_step(lambda s: _flip_in_dataset("a")(s / "posterior.nc")),
        "posterior.nc truncated": in_step(lambda s: _truncate(0.6)(s / "posterior.nc")),
        "posterior.nc deleted": in_step(lambda s: (s / "posterior.nc").unlink()),
        "past data cut": in_step(_nc_rewrite("data.nc", lambda ds: ds.isel(time=slice(3, None)))),
        "past data value edited": in_step(_nc_rewrite(
            "data.nc", lambda ds: ds.assign(y=ds["y"] + 0.5))),
        "seed edited": in_step(_json_edit(lambda d: d.__setitem__("seed", d["seed"] + 1))),
        "rng state edited": in_step(_json_edit(
            lambda d: d["rng_state"]["state"].__setitem__("state", d["rng_state"]["state"]["state"] + 1))),
        "batch counter edited": in_step(_json_edit(lambda d: d.__setitem__("n_seen", d["n_seen"] - 1))),
        "meta.json truncated": in_step(lambda s: (s / "meta.json").write_text(
            (s / "meta.json").read_text()[:200])),
        "rejected batch edited": flip_rejected,
    }
    rows = []
    for name, corrupt in faults.items():
        root = work / "bad"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(work / "good", root)
        corrupt(root)
        try:
            AssimilationRun.resume(root, model.log_likelihood, model.log_prior)
            outcome = "RESUMED"
        except IntegrityError as exc:
            outcome = f"detected: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001
            outcome = f"UNNAMED {type(exc).__name__}: {exc}"[:200]
        rows.append({"fault": name, "outcome": outcome})
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return {"tried": len(rows), "detected": sum(r["outcome"].startswith("detected") for r in rows),
            "faults": rows}


# ---------------------------------------------------------------------------------- ledgers
def ledger_faults() -> dict[str, Any]:
    """Forge, edit, remove and reorder ledger entries; count those ``Ledger.from_json`` names."""
    import copy

    from ..exceptions import LedgerIntegrityError
    from ..inference.ledger import Ledger

    led = synthetic_result(0).ledger
    doc = json.loads(led.to_json())

    def variant(fn: Callable[[dict], Any]) -> str:
        d = copy.deepcopy(doc)
        out = fn(d)
        return out if isinstance(out, str) else json.dumps(d)

    forged = dict(doc["entries"][1], name="coverage_90", kind="validation", passed=True,
                  result={"coverage": 0.9})
    forged_nohash = {k: v for k, v in forged.items() if k not in ("prev_hash", "entry_hash")}

    def append(entry, bump=True):
        def fn(d):
            d["entries"].append(dict(entry, prev_hash=d["head"]) if "prev_hash" in entry else entry)
            if bump:
                d["n_entries"] += 1
        return fn

    def edit(i, key, value):
        def fn(d):
            d["entries"][i][key] = value
        return fn

    def remove(i, fix_count=False):
        def fn(d):
            del d["entries"][i]
            if fix_count:
                d["n_entries"] -= 1
                d["head"] = d["entries"][-1]["entry_hash"]
        return fn

    tries = {
        "forged PASS entry appended (no hashes)": variant(append(forged_nohash)),
        "forged PASS entry appended (copied hashes)": variant(append(forged)),
        "forged PASS entry appended, count and head not updated": variant(append(forged, False)),
        "FAIL edited to PASS": variant(edit(1, "passed", True)),
        "result figure edited": variant(edit(1, "result", {"coverage": 0.95, "threshold": 0.8})),
        "data hash edited": variant(edit(0, "data_hash", "0" * 64)),
        "middle entry removed": variant(remove(1)),
        "last entry removed": variant(remove(2)),
        "first entry removed": variant(remove(0)),
        "entries reordered": variant(lambda d: d["entries"].reverse()),
        "entry duplicated": variant(lambda d: d["entries"].append(d["entries"][-1])),
        "unknown field added": variant(edit(0, "approved_by", "me")),
        "malformed JSON": led.to_json()[:-7],
        "not a ledger (a number)": "42",
    }
    # a deliberate truncation that also rewrites the count and head hash: a chain without an
    # external anchor cannot see it (inside a result file the attribute checksum does)
    limitation = variant(remove(2, fix_count=True))
    try:
        Ledger.from_json(limitation)
        lim = "accepted (standalone ledger JSON: not detectable without an external anchor)"
    except LedgerIntegrityError:
        lim = "detected"
    rows = []
    for name, text in tries.items():
        try:
            Ledger.from_json(text)
            outcome = "ACCEPTED"
        except LedgerIntegrityError as exc:
            outcome = f"detected: {str(exc)[:120]}"
        except Exception as exc:  # noqa: BLE001
            outcome = f"UNNAMED {type(exc).__name__}: {exc}"[:200]
        rows.append({"fault": name, "outcome": outcome})
    return {"tried": len(rows), "detected": sum(r["outcome"].startswith("detected") for r in rows),
            "faults": rows, "limitation_last_entries_cut_with_count_and_head_rewritten": lim}


# ----------------------------------------------------------------------------------- suites
def suite_faults(workdir: str | Path | None = None) -> dict[str, Any]:
    """Suites naming callables a suite may not run; count those refused with nothing run."""
    from ..suite import SuiteConfigError, discover_cases, run_case

    work = Path(tempfile.mkdtemp(prefix="vvuq_suite_")) if workdir is None else Path(workdir)
    marker = work / "MARKER"
    targets = {
        "os:system": f'{{ command = "touch {marker}" }}',
        "subprocess:run": f'{{ args = ["touch", "{marker}"] }}',
        "subprocess:check_output": f'{{ args = ["touch", "{marker}"] }}',
        "builtins:exec": f'{{ source = "open(\'{marker}\', \'w\').close()" }}',
        "builtins:eval": f'{{ source = "open(\'{marker}\', \'w\').close()" }}',
        "shutil:rmtree": f'{{ path = "{work / "nothing"}" }}',
        "importlib:import_module": '{ name = "os" }',
        "pickle:loads": '{ data = "x" }',
        "numpy:load": f'{{ file = "{marker}" }}',
        "planted:run": "{}",  # planted.py sits in the parent of the suite root
        "helpers:system": f'{{ command = "touch {marker}" }}',  # declared module re-exporting os.system
        "helpers:_private": "{}",
        "vvuq_twin.cli:main": '{ argv = ["run", "--out", "x"] }',
        "vvuq_twin.suite:main": "{}",
        "vvuq_twin._io:atomic_write_text": f'{{ path = "{marker}", text = "x" }}',
        "vvuq_twin.ensembles:dataclass": "{}",
    }
    planted = f"open({str(marker)!r}, 'w').close()\ndef run():\n    return 0.0\n"
    rows = []
    for i, (target, kwargs) in enumerate(targets.items()):
        base = work / f"s{i}"
        root = base / "validation_suite"
        (root / "quick").mkdir(parents=True)
        (base / "planted.py").write_text(planted)
        (work / "planted.py").write_text(planted)
        (root / "helpers.py").write_text(
            "from os import system\ndef _private():\n    return 0.0\n")
        (root / "suite.toml").write_text('[suite]\nmodules = ["helpers"]\n')
        (root / "quick" / "c.toml").write_text(
            f'[[case]]\nname = "c{i}"\ncallable = "{target}"\nkwargs = {kwargs}\n'
            'threshold = 1e9\ncomparison = "<="\n')
        try:
            cases = discover_cases(root, "full")
            results = [run_case(c) for c in cases]
            refused = all(r.status == "error" and "refused" in r.message for r in results)
            outcome = ("refused at run: " + results[0].message[:100]) if refused else \
                f"RAN: {[r.status for r in results]}"
        except SuiteConfigError as exc:
            refused, outcome = True, f"refused at load: {str(exc).split(': ', 2)[-1][:100]}"
        ran = marker.exists()
        if ran:
            marker.unlink()
        rows.append({"callable": target, "refused": refused and not ran, "outcome": outcome,
                     "side_effect": ran})
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return {"tried": len(rows), "refused": sum(r["refused"] for r in rows), "cases": rows}


def run_all(n_kills: int = 12) -> dict[str, Any]:
    """Every fault-injection run; see the module docstring."""
    t0 = time.perf_counter()
    out = {
        "kills": kill_during_writes(n_kills=n_kills),
        "result_files": result_file_faults(),
        "checkpoints": checkpoint_faults(),
        "ledger": ledger_faults(),
        "suite": suite_faults(),
    }
    out["wall_time_s"] = round(time.perf_counter() - t0, 2)
    return out


# ------------------------------------------------------------------ simulators that misbehave
def crashing_simulator(x: np.ndarray) -> np.ndarray:
    """``[sum(x), prod(x)]``, but kills its own process (SIGKILL) when ``x[0] > 0.8``."""
    if x[0] > 0.8:
        os.kill(os.getpid(), signal.SIGKILL)
    return np.array([x.sum(), x.prod()])


def nan_simulator(x: np.ndarray) -> np.ndarray:
    """``[sum(x), prod(x)]``, NaN in the second output when ``x[0] > 0.7``."""
    return np.array([x.sum(), np.nan if x[0] > 0.7 else x.prod()])


def odd_first_row_simulator(x: np.ndarray) -> np.ndarray:
    """``[sum(x), prod(x)]``, but three values for the row whose first input is exactly 0."""
    return np.array([x.sum(), x.prod(), 0.0]) if x[0] == 0.0 else np.array([x.sum(), x.prod()])
