"""The VVUQ loop: typed steps run in order, gates enforced, every step saved, resumable.

>>> loop = VVUQLoop(twin, DataSplit(cal, holdout), [Calibrate(draws=500), Validate()],
...                 seed=7, out="out/loop")                                  # doctest: +SKIP
>>> result = loop.run()                                                      # doctest: +SKIP
>>> result.status, result["validate"].status                                 # doctest: +SKIP

Gates: before a step runs, every step it *needs* is checked. A FAILed one stops the loop with
a :class:`~vvuq_twin.loop.status.GateError` naming it and saying what to do (the completed
steps stay saved), unless the loop was built with ``on_fail="flag"``: the step then runs and
is marked provisional, and so is everything downstream of it. A NOT INFORMATIVE validation
never stops a decision but marks it provisional.

Resume: with ``out`` set, each completed step writes ``steps/NN_<name>.json`` (and its output
object, e.g. the calibration as NetCDF) atomically. A new run with the same declaration, data,
seed and step configuration loads the completed steps instead of re-running them and
continues from the first missing one: each step's seed depends only on the loop seed and the
step's name, so the results are identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from .._io import atomic_write_text as _atomic_write_text
from .status import (PROVISIONAL, DiagnosticsGateError, GateError, Status, StepResult,
                     ValidationGateError, jsonable)
from .steps import DataSplit, LoopContext, LoopSpecError, Step

__all__ = ["VVUQLoop", "LoopResult"]

_FORMAT = 1


_CODE: dict[type, str] = {}


def _step_code(cls: type) -> str:
    """Hash of the source of a step class and of its bases up to :class:`Step` (part of the
    resume fingerprint: a changed ``run`` method re-runs the step instead of loading the result
    the old code saved). Functions the class calls elsewhere are not included."""
    if cls not in _CODE:
        import inspect

        h = hashlib.sha256()
        for c in cls.__mro__:
            if c is Step or not issubclass(c, Step):
                break
            try:
                h.update(inspect.getsource(c).encode())
            except (OSError, TypeError):  # defined at run time (no source): its name only
                h.update(f"{c.__module__}.{c.__qualname__}".encode())
        _CODE[cls] = h.hexdigest()[:16]
    return _CODE[cls]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class LoopResult:
    """The typed results of a loop run.

    Attributes
    ----------
    name : str
    results : dict of StepResult
        In step order.
    objects : dict
        Output objects of the steps (TwinResult of calibration and assimilation, ...).
    ledger : Ledger
        One entry per step (provisional figures flagged).
    meta : dict
        Seed, declaration and data hashes, ``on_fail``.
    volatile : dict
        Timestamps, durations (wall ``durations_s``, this process's CPU ``cpu_s`` of each step
        run, not resumed), resumed steps: everything that differs between two runs with the same
        seed.
    """

    name: str
    results: dict[str, StepResult]
    objects: dict[str, Any]
    ledger: Any
    meta: dict[str, Any]
    volatile: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, step: str) -> StepResult:
        return self.results[step]

    @property
    def status(self) -> Status:
        """FAIL if any step failed, WARN if any is provisional, warned or not informative, else PASS."""
        sts = [r.status for r in self.results.values()]
        if Status.FAIL in sts:
            return Status.FAIL
        if any(r.is_provisional for r in self.results.values()) or Status.WARN in sts or Status.NOT_INFORMATIVE in sts:
            return Status.WARN
        return Status.PASS

    @property
    def provisional_steps(self) -> list[str]:
        """Steps whose figures derive from a failed or uninformative gate."""
        return [n for n, r in self.results.items() if r.is_provisional]

    def summary(self) -> dict[str, Any]:
        """The JSON summary: comparable content first, volatile metadata in one block."""
        return {
            "format": _FORMAT,
            "loop": self.name,
            **jsonable(self.meta),
            "status": self.status.value,
            "provisional_steps": self.provisional_steps,
            "steps": [r.to_dict() for r in self.results.values()],
            "ledger": json.loads(self.ledger.to_json()),
            "volatile": jsonable(self.volatile),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`summary` as JSON (atomically)."""
        p = Path(path)
        _atomic_write_text(p, json.dumps(self.summary(), indent=2) + "\n")
        return p

    def report(self, title: str | None = None, *, prose: dict[str, str] | None = None) -> Any:
        """The HTML report of the run (a :class:`vvuq_twin.report.Report`), rendered from the
        typed results and the ledger. ``prose`` maps step names to a paragraph shown with them."""
        from .render import render_report

        return render_report(self, title=title, prose=prose)


class VVUQLoop:
    """Run typed VVUQ steps on one declaration and one data split, with gates that hold.

    Parameters
    ----------
    twin : Twin
    split : DataSplit
    steps : sequence of Step
        In order; each step's ``needs``/``uses`` must name earlier steps.
    seed : int
        The loop's seed; each step derives its own from it and its name.
    on_fail : {"stop", "flag"}
        What a failed gate does to the steps that consume it: refuse (a GateError) or run and
        be marked PROVISIONAL.
    out : path, optional
        Directory of the saved steps (enables resume) and of :meth:`LoopResult.to_json`.
    name : str, optional
        Name of the loop (default: the twin's name).
    progress : callable or bool
        ``True`` prints one line per step (default), ``False`` is silent, a callable receives
        the lines.
    precompile : bool
        Before the first step that runs, compile the models of every calibration the remaining
        steps will run (:meth:`Step.compile_jobs`) at once, in parallel child processes
        (:func:`vvuq_twin.inference.precompile`); the steps then load them from the on-disk
        compile cache. The draws are the same either way; only the wall time of a cold compile
        cache changes. Default True.
    """

    def __init__(self, twin: Any, split: DataSplit, steps: Sequence[Step], *, seed: int = 0,
                 on_fail: Literal["stop", "flag"] = "stop", out: str | Path | None = None,
                 name: str | None = None, progress: bool | Callable[[str], None] = True,
                 precompile: bool = True) -> None:
        if not isinstance(precompile, bool):
            raise LoopSpecError(f"precompile must be True or False, got {precompile!r}.")
        self.precompile = bool(precompile)
        if on_fail not in ("stop", "flag"):
            raise LoopSpecError(f"on_fail must be 'stop' or 'flag', got {on_fail!r}.")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise LoopSpecError(f"seed must be an int, got {type(seed).__name__}.")
        if not isinstance(split, DataSplit):
            raise LoopSpecError("split must be a vvuq_twin.loop.DataSplit(calibration, holdout, stream).")
        seen: list[str] = []
        for s in steps:
            if not isinstance(s, Step):
                raise LoopSpecError(f"Every step must be a vvuq_twin.loop Step, got {type(s).__name__}.")
            if s.name in seen:
                raise LoopSpecError(f"Two steps are named {s.name!r}; give each a unique name.")
            for dep in (*s.needs, *s.uses):
                if dep not in seen and not (dep in s.uses and dep not in [t.name for t in steps]):
                    raise LoopSpecError(
                        f"Step {s.name!r} needs {dep!r}, which is not an earlier step "
                        f"(earlier steps: {seen}). Reorder the steps or fix the name.")
            seen.append(s.name)
        twin.check(split.calibration)
        if split.holdout is not None:
            twin.check(split.holdout)
        self.twin, self.split, self.steps = twin, split, list(steps)
        self.seed, self.on_fail = int(seed), on_fail
        self.out = None if out is None else Path(out)
        self.name = name or twin.name
        if progress is True:
            self._say: Callable[[str], None] | None = lambda m: print(f"[{self.name}] {m}", flush=True)
        elif progress is False:
            self._say = None
        else:
            self._say = progress

    # ------------------------------------------------------------------ helpers
    def _meta(self) -> dict[str, Any]:
        return {"seed": self.seed, "declaration_hash": self.twin.hash, "data_hashes": self.split.hashes(),
                "on_fail": self.on_fail}

    def _fingerprints(self) -> dict[str, str]:
        fps: dict[str, str] = {}
        base = self._meta()
        for s in self.steps:
            fps[s.name] = _digest({"base": base, "step": s.name, "class": type(s).__name__,
                                   "code": _step_code(type(s)),
                                   "config": s.config(), "needs": list(s.needs), "uses": list(s.uses),
                                   "upstream": [fps.get(d) for d in (*s.needs, *s.uses)]})
        return fps

    def _gate(self, step: Step, ctx: LoopContext) -> tuple[str, ...]:
        reasons: list[str] = []
        for dep in step.needs:
            r = ctx.results[dep]
            if r.status is Status.FAIL:
                if self.on_fail == "stop":
                    fails = list(r.values.get("failures") or [r.reason])
                    adv = list(r.values.get("advice") or [])
                    cls = (DiagnosticsGateError if r.kind == "calibration" else
                           ValidationGateError if r.kind == "validation" else GateError)
                    raise cls(step.name, dep, fails, adv)
                reasons.append(f"{dep} FAILED: {r.reason}")
            elif r.status is Status.NOT_INFORMATIVE:
                reasons.append(f"{dep} NOT INFORMATIVE: {r.reason}")
            elif r.status is Status.WARN and (r.values.get("unmixed_batches") or r.values.get("mixing_ok") is False):
                # a posterior whose SMC moves did not decorrelate failed its own diagnostic
                reasons.append(f"{dep} WARN: its particles did not meet the mixing criterion ({r.reason})")
            if r.is_provisional:
                reasons.append(f"{dep} is itself {PROVISIONAL}")
        return tuple(reasons)

    def _precompile(self, ctx: LoopContext, steps: Sequence[Step], volatile: dict[str, Any]) -> None:
        """Compile the calibrations of ``steps`` at once (see ``precompile``); timings go to ``volatile``."""
        from ..inference import precompile

        jobs = [(job, st.name) for st in steps for job in st.compile_jobs(ctx)]
        if not jobs:
            return
        t0 = time.perf_counter()
        try:
            rows = precompile([j for j, _ in jobs])
        except Exception as exc:  # noqa: BLE001 - the step that calibrates raises it with its context
            volatile["precompile"] = {"seconds": time.perf_counter() - t0,
                                      "error": f"{type(exc).__name__}: {exc}"}
            return
        volatile["precompile"] = {"seconds": time.perf_counter() - t0,
                                  "jobs": [{"step": name, **row} for (_, name), row in zip(jobs, rows)]}
        fresh = sum(r["status"] == "saved" for r in rows)
        if self._say and fresh:
            self._say(f"compiled {fresh} model(s) for the steps to come in {time.perf_counter() - t0:.1f} s")

    def _record(self, ctx: LoopContext, ledger: Any, r: StepResult) -> None:
        passed = {Status.PASS: True, Status.FAIL: False}.get(r.status)
        d = r.to_dict()
        ledger.record(r.kind, r.step, twin=self.twin, data_hash=self.split.calibration.hash, passed=passed,
                      result={"status": d["status"], "reason": d["reason"], "provisional": r.is_provisional,
                              "provisional_reasons": list(r.provisional), "values": d["values"]})

    # ------------------------------------------------------------------ run
    def run(self, *, resume: bool = True) -> LoopResult:
        """Run (or resume) the loop.

        Parameters
        ----------
        resume : bool
            With ``out`` set, load completed steps saved by an earlier run with the same
            fingerprint instead of re-running them.

        Raises
        ------
        GateError
            A step needs a step that failed its gate and ``on_fail="stop"``.
        """
        from ..inference.ledger import Ledger

        ctx = LoopContext(self.twin, self.split, self.seed, self.on_fail, progress=self._say)
        ctx._steps = self.steps  # type: ignore[attr-defined]
        ledger = Ledger()
        fps = self._fingerprints()
        volatile: dict[str, Any] = {"started_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "durations_s": {}, "cpu_s": {}, "resumed_steps": []}
        # CPU seconds of this process (all its threads) per step: on a shared machine the wall
        # time depends on the load, the CPU time much less (resumed steps: not re-measured)
        t_all, c_all = time.perf_counter(), time.process_time()
        chain_ok = True
        for i, step in enumerate(self.steps):
            sdir = None if self.out is None else self.out / "steps" / f"{i:02d}_{step.name}"
            rec_path = None if sdir is None else sdir.with_suffix(".json")
            loaded = False
            if resume and chain_ok and rec_path is not None and rec_path.exists():
                try:
                    rec = json.loads(rec_path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    rec = None
                if rec is not None and rec.get("fingerprint") == fps[step.name]:
                    r = StepResult.from_record(rec["result"])
                    r.consumed_by = []
                    obj = step.load(sdir, ctx, r)
                    ctx.results[step.name], ctx.objects[step.name] = r, obj
                    volatile["resumed_steps"].append(step.name)
                    volatile["durations_s"][step.name] = r.duration_s
                    self._record(ctx, ledger, r)
                    loaded = True
                    if self._say:
                        self._say(f"{step.name}: resumed ({r.status})")
            if loaded:
                continue
            if chain_ok and self.precompile:
                self._precompile(ctx, self.steps[i:], volatile)
            chain_ok = False  # a re-run step invalidates the saved steps after it
            provisional = self._gate(step, ctx)
            if self._say:
                self._say(f"{step.name}: running")
            t0, c0 = time.perf_counter(), time.process_time()
            r, obj = step.run(ctx)
            r.duration_s = time.perf_counter() - t0
            volatile["cpu_s"][step.name] = time.process_time() - c0
            r.inputs = tuple(dict.fromkeys((*step.needs, *[u for u in step.uses if u in ctx.results])))
            r.provisional = provisional
            ctx.results[step.name], ctx.objects[step.name] = r, obj
            volatile["durations_s"][step.name] = r.duration_s
            self._record(ctx, ledger, r)
            if sdir is not None:
                sdir.mkdir(parents=True, exist_ok=True)
                step.save(obj, sdir, ctx)
                _atomic_write_text(rec_path, json.dumps({"fingerprint": fps[step.name],
                                                         "result": r.to_record()}, indent=1))
            if self._say:
                tag = f" [{PROVISIONAL}]" if r.is_provisional else ""
                self._say(f"{step.name}: {r.status}{tag} - {r.reason}")
        for r in ctx.results.values():
            for dep in r.inputs:
                if r.step not in ctx.results[dep].consumed_by:
                    ctx.results[dep].consumed_by.append(r.step)
        volatile["total_s"] = time.perf_counter() - t_all
        volatile["total_cpu_s"] = time.process_time() - c_all
        volatile["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        from ..report import software_versions

        volatile["versions"] = software_versions()
        res = LoopResult(self.name, dict(ctx.results), dict(ctx.objects), ledger, self._meta(), volatile)
        if self.out is not None:
            res.to_json(self.out / "loop_summary.json")
            _atomic_write_text(self.out / "ledger.json", ledger.to_json())
        return res
