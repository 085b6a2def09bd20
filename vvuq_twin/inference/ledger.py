"""The continual-VVUQ ledger stored with a twin's results.

Every calibration, verification, validation or assimilation step appends an :class:`Entry`
keyed by the declaration hash, the hashes of the components the check depends on, the data
hash and the package version. When the declaration changes (a prior, the discrepancy, the
simulator), :meth:`Ledger.stale` tells which entries no longer apply, so only those are re-run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

__all__ = ["Entry", "Ledger", "DEPENDS_ON_ALL"]

#: components a check depends on when it does not say otherwise
DEPENDS_ON_ALL = ("simulator", "parameters", "discrepancy", "observation", "hierarchy")


def _version() -> str:
    from .._version import __version__

    return __version__


@dataclass
class Entry:
    """One ledger entry.

    Attributes
    ----------
    kind : str
        ``"calibration"``, ``"verification"``, ``"validation"``, ``"assimilation"``,
        ``"operation"``, ...
    name : str
        Name of the check (e.g. ``"sbc"``, ``"coverage_90"``, ``"mms_order"``).
    passed : bool or None
        Outcome (None for records without a pass/fail).
    declaration_hash, data_hash : str
        What it was computed on.
    components : dict
        Hash of each declaration component this entry depends on.
    result : dict
        JSON-serialisable figures (estimate, threshold, ...).
    version : str
        vvuq_twin version that produced it.
    """

    kind: str
    name: str
    passed: bool | None
    declaration_hash: str
    data_hash: str
    components: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    version: str = field(default_factory=_version)


@dataclass
class Ledger:
    """An append-only list of :class:`Entry`, JSON round-trippable."""

    entries: list[Entry] = field(default_factory=list)

    def record(
        self,
        kind: str,
        name: str,
        *,
        twin: Any,
        data_hash: str,
        passed: bool | None = None,
        result: Mapping[str, Any] | None = None,
        depends_on: Iterable[str] = DEPENDS_ON_ALL,
    ) -> Entry:
        """Append an entry for ``twin`` (a Twin) and return it."""
        comps = twin.component_hashes()
        e = Entry(
            kind=kind,
            name=name,
            passed=None if passed is None else bool(passed),
            declaration_hash=twin.hash,
            data_hash=data_hash,
            components={k: comps[k] for k in depends_on},
            result=json.loads(json.dumps(dict(result or {}), default=_jsonable)),
        )
        self.entries.append(e)
        return e

    def latest(self, name: str | None = None, kind: str | None = None) -> list[Entry]:
        """The newest entry for each (kind, name), optionally filtered."""
        seen: dict[tuple[str, str], Entry] = {}
        for e in self.entries:
            if (name is None or e.name == name) and (kind is None or e.kind == kind):
                seen[(e.kind, e.name)] = e
        return list(seen.values())

    def stale(self, twin: Any, data_hash: str | None = None) -> list[Entry]:
        """Latest entries whose components (or data) differ from ``twin`` (and ``data_hash``)."""
        comps = twin.component_hashes()
        out = []
        for e in self.latest():
            changed = any(comps.get(k) != h for k, h in e.components.items())
            if changed or (data_hash is not None and e.data_hash != data_hash):
                out.append(e)
        return out

    def status(self, twin: Any, data_hash: str | None = None) -> list[dict[str, Any]]:
        """One row per check: kind, name, state in {"pass", "fail", "stale", "record"}."""
        stale = {(e.kind, e.name) for e in self.stale(twin, data_hash)}
        rows = []
        for e in self.latest():
            if (e.kind, e.name) in stale:
                state = "stale"
            elif e.passed is None:
                state = "record"
            else:
                state = "pass" if e.passed else "fail"
            rows.append({"kind": e.kind, "name": e.name, "state": state})
        return rows

    def refresh(
        self,
        twin: Any,
        data_hash: str,
        checks: Mapping[str, Callable[[], tuple[bool | None, Mapping[str, Any]]]],
        *,
        kind: str = "verification",
        depends_on: Mapping[str, Iterable[str]] | None = None,
    ) -> list[str]:
        """Run only the checks that are missing or stale; return the names that were (re)run."""
        current = {(e.kind, e.name): e for e in self.latest()}
        stale = {(e.kind, e.name) for e in self.stale(twin, data_hash)}
        ran = []
        for name, fn in checks.items():
            key = (kind, name)
            if key in current and key not in stale:
                continue
            passed, result = fn()
            self.record(kind, name, twin=twin, data_hash=data_hash, passed=passed, result=result,
                        depends_on=(depends_on or {}).get(name, DEPENDS_ON_ALL))
            ran.append(name)
        return ran

    def summary(self, twin: Any | None = None, data_hash: str | None = None) -> str:
        """Human-readable table: which checks pass, which are stale, which fail."""
        if twin is None:
            rows = [
                {"kind": e.kind, "name": e.name,
                 "state": "record" if e.passed is None else ("pass" if e.passed else "fail")}
                for e in self.latest()
            ]
        else:
            rows = self.status(twin, data_hash)
        if not rows:
            return "VVUQ ledger: empty"
        w = max(len(r["name"]) for r in rows)
        lines = ["VVUQ ledger:"]
        for r in rows:
            lines.append(f"  {r['kind']:<13} {r['name']:<{w}}  {r['state'].upper()}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps([asdict(e) for e in self.entries], default=_jsonable)

    @classmethod
    def from_json(cls, text: str) -> "Ledger":
        return cls([Entry(**d) for d in json.loads(text)])


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
