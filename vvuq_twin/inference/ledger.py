"""The continual-VVUQ ledger stored with a twin's results.

Every calibration, verification, validation or assimilation step appends an :class:`Entry`
keyed by the declaration hash, the hashes of the components the check depends on, the data
hash and the package version. When the declaration changes (a prior, the discrepancy, the
simulator), :meth:`Ledger.stale` tells which entries no longer apply, so only those are re-run.

The ledger is append-only and a hash chain: each entry stores the SHA-256 of the previous entry
(``prev_hash``; :data:`GENESIS` for the first) and of its own content including that link
(``entry_hash``). :meth:`Ledger.from_json` verifies the chain, so an entry that was forged
(added by hand), edited or removed is detected and named
(:class:`~vvuq_twin.exceptions.LedgerIntegrityError`). This protects against accidents and naive
edits; it is not a signature - whoever can recompute SHA-256 can rebuild a consistent chain.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping

from ..exceptions import LedgerIntegrityError

__all__ = ["Entry", "Ledger", "DEPENDS_ON_ALL", "GENESIS", "LedgerIntegrityError"]

#: ``prev_hash`` of the first entry of a ledger
GENESIS = "0" * 64
#: format tag of :meth:`Ledger.to_json`
LEDGER_FORMAT = "vvuq_twin.ledger/2"

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
    prev_hash : str
        ``entry_hash`` of the entry before it (:data:`GENESIS` for the first); set by
        :meth:`Ledger.record`.
    entry_hash : str
        SHA-256 of this entry's content (all other fields, ``prev_hash`` included).
    """

    kind: str
    name: str
    passed: bool | None
    declaration_hash: str
    data_hash: str
    components: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    version: str = field(default_factory=_version)
    prev_hash: str = ""
    entry_hash: str = ""

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field but ``entry_hash``."""
        d = asdict(self)
        d.pop("entry_hash")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=_jsonable)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Ledger:
    """An append-only hash chain of :class:`Entry`, JSON round-trippable.

    Entries are added only with :meth:`record` (or :meth:`refresh`), which links each to the one
    before; :meth:`verify` (called by :meth:`from_json`) checks every link.
    """

    entries: list[Entry] = field(default_factory=list)

    @property
    def head(self) -> str:
        """``entry_hash`` of the last entry (:data:`GENESIS` when empty)."""
        return self.entries[-1].entry_hash if self.entries else GENESIS

    def verify(self, where: str = "ledger") -> None:
        """Check the hash chain; raise :class:`LedgerIntegrityError` naming the first bad entry."""
        prev = GENESIS
        for i, e in enumerate(self.entries):
            label = f"{where}: entry #{i} ({e.kind} {e.name!r}, passed={e.passed})"
            if not e.entry_hash:
                raise LedgerIntegrityError(
                    f"{label} has no hash: it was not added by Ledger.record (forged, or written by "
                    "a vvuq_twin version without a hash chain). Re-run the check to record it."
                )
            if e.prev_hash != prev:
                raise LedgerIntegrityError(
                    f"{label} does not follow the entry before it (prev_hash "
                    f"{e.prev_hash[:12]!r}, expected {prev[:12]!r}): an entry before it was "
                    "removed or reordered, or this entry was inserted by hand."
                )
            if e.content_hash() != e.entry_hash:
                raise LedgerIntegrityError(
                    f"{label} was edited after it was recorded: its content no longer matches "
                    f"its hash {e.entry_hash[:12]!r}."
                )
            prev = e.entry_hash

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
            prev_hash=self.head,
        )
        e.entry_hash = e.content_hash()
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
        """The ledger as JSON: the entries (hash chain included), their number and the head hash.

        The count and head let :meth:`from_json` detect entries removed from the end.
        """
        return json.dumps({"format": LEDGER_FORMAT, "n_entries": len(self.entries),
                           "head": self.head, "entries": [asdict(e) for e in self.entries]},
                          default=_jsonable)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (the old file stays whole until then)."""
        from .._io import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Ledger":
        """Read a ledger written by :meth:`save`, verifying its hash chain."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise LedgerIntegrityError(f"{p}: not a text file ({exc}).") from exc
        return cls.from_json(text, where=str(p))

    @classmethod
    def from_json(cls, text: str, *, where: str = "ledger") -> "Ledger":
        """Parse :meth:`to_json` output and verify the hash chain.

        Raises
        ------
        LedgerIntegrityError
            Malformed JSON, an entry with missing or unknown fields, or a broken chain (an entry
            forged, edited or removed); the message names the entry.
        """
        try:
            raw = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise LedgerIntegrityError(f"{where}: not valid JSON ({exc}).") from exc
        head = n_entries = None
        if isinstance(raw, dict):
            if raw.get("format") != LEDGER_FORMAT or not isinstance(raw.get("entries"), list):
                raise LedgerIntegrityError(
                    f"{where}: not a vvuq_twin ledger (expected an object with format "
                    f"{LEDGER_FORMAT!r} and a list 'entries', got keys {sorted(raw)}).")
            head, n_entries, raw = raw.get("head"), raw.get("n_entries"), raw["entries"]
        elif not isinstance(raw, list):
            raise LedgerIntegrityError(
                f"{where}: expected a ledger JSON object (or a list of entries), got "
                f"{type(raw).__name__}.")
        names = {f.name for f in fields(Entry)}
        required = {f.name for f in fields(Entry) if f.name not in ("components", "result", "version",
                                                                   "prev_hash", "entry_hash")}
        entries = []
        for i, d in enumerate(raw):
            if not isinstance(d, dict):
                raise LedgerIntegrityError(
                    f"{where}: entry #{i} must be a JSON object, got {type(d).__name__}.")
            unknown, missing = sorted(set(d) - names), sorted(required - set(d))
            if unknown or missing:
                raise LedgerIntegrityError(
                    f"{where}: entry #{i} is malformed (unknown fields {unknown}, missing fields "
                    f"{missing}; valid fields: {sorted(names)}).")
            entries.append(Entry(**d))
        led = cls(entries)
        led.verify(where)
        if n_entries is not None and n_entries != len(entries):
            raise LedgerIntegrityError(
                f"{where}: {n_entries} entries were recorded but {len(entries)} are present: "
                f"{'the last ' + str(n_entries - len(entries)) + ' were removed' if n_entries > len(entries) else 'entries were added by hand'}.")
        if head is not None and head != led.head:
            raise LedgerIntegrityError(
                f"{where}: the chain ends at {led.head[:12]!r} but the ledger was written with head "
                f"{str(head)[:12]!r}: entries at the end were removed or replaced.")
        return led


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
