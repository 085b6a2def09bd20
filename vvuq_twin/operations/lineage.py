"""Lineage of twin operations: which twins, components, data and results went in, with hashes.

A :class:`Lineage` is a small directed graph held in plain dicts (no networkx): nodes are
twins, results, data sets, components and operation outputs, each with its content hash;
edges say which operation produced what from what. It round-trips through JSON, is stored in
``Dataset.attrs["lineage"]`` (a JSON string, so it survives NetCDF) and exports Graphviz DOT.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import xarray as xr

from ..exceptions import LineageError

__all__ = ["LineageError", "Lineage", "ATTR_KEY", "attach_lineage", "lineage_of"]

#: key under which lineage JSON is stored in xarray attrs / TwinResult.info
ATTR_KEY = "lineage"


@dataclass
class Lineage:
    """A provenance graph of twin operations.

    Attributes
    ----------
    nodes : dict
        ``id -> {"kind": ..., "label": ..., "hash": ..., **meta}``. Node ids are
        ``"<kind>:<hash[:12]>"`` so that the same object always maps to the same node.
    edges : list of dict
        ``{"source": id, "target": id, "operation": name}``.
    """

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)

    # ----------------------------------------------------------------- building
    def add_node(self, kind: str, label: str, hash: str, **meta: Any) -> str:
        """Add (or reuse) a node and return its id."""
        node_id = f"{kind}:{hash[:12]}"
        entry = {"kind": kind, "label": str(label), "hash": str(hash)}
        entry.update({k: _jsonable(v) for k, v in meta.items()})
        self.nodes.setdefault(node_id, entry)
        return node_id

    def add_edge(self, source: str, target: str, operation: str) -> None:
        """Add an edge ``source -> target`` labelled by ``operation``."""
        for nid in (source, target):
            if nid not in self.nodes:
                raise LineageError(
                    f"Edge {source!r} -> {target!r}: node {nid!r} is not in the graph; add it with "
                    "add_node first."
                )
        edge = {"source": source, "target": target, "operation": str(operation)}
        if edge not in self.edges:
            self.edges.append(edge)

    def add_twin(self, twin: Any, *, components: bool = True) -> str:
        """Add a Twin node (and its component nodes, linked by ``component`` edges)."""
        tid = self.add_node("twin", twin.name, twin.hash)
        if components:
            for comp, h in twin.component_hashes().items():
                cid = self.add_node("component", f"{twin.name}.{comp}", h, component=comp)
                self.add_edge(cid, tid, "component")
        return tid

    def add_data(self, data: Any, label: str = "data") -> str:
        """Add a TwinData node."""
        return self.add_node("data", label, data.hash, n=int(data.n), units=list(data.units))

    def add_result(self, result: Any, label: str | None = None) -> str:
        """Add a TwinResult node with its twin and data (edges ``calibrate``)."""
        lab = label or (result.twin.name if result.twin is not None else "result")
        key = hashlib.sha256(f"{result.declaration_hash}|{result.data_hash}|"
                             f"{result.info.get('seed_sample', '')}".encode()).hexdigest()
        rid = self.add_node("result", lab, key, declaration_hash=result.declaration_hash,
                            data_hash=result.data_hash, sampler=result.info.get("sampler", ""))
        if result.twin is not None:
            self.add_edge(self.add_twin(result.twin), rid, "calibrate")
        if result.data is not None:
            self.add_edge(self.add_data(result.data, f"{lab}.data"), rid, "calibrate")
        for parent in _parents_of(result):
            self.merge(parent)
        return rid

    def add_output(self, operation: str, label: str, inputs: list[str], **meta: Any) -> str:
        """Add the output node of an operation with edges from each input; return its id."""
        blob = json.dumps({"op": operation, "label": label, "in": sorted(inputs),
                           "meta": _jsonable(meta)},
                          sort_keys=True, default=str)
        oid = self.add_node("output", label, hashlib.sha256(blob.encode()).hexdigest(),
                            operation=operation, **meta)
        for i in inputs:
            self.add_edge(i, oid, operation)
        return oid

    def merge(self, other: "Lineage") -> "Lineage":
        """Add all nodes and edges of ``other`` (in place); return self."""
        for k, v in other.nodes.items():
            self.nodes.setdefault(k, v)
        for e in other.edges:
            if e not in self.edges:
                self.edges.append(e)
        return self

    # ----------------------------------------------------------------- queries
    def parents(self, node_id: str) -> list[str]:
        """Ids of the direct inputs of ``node_id``."""
        return [e["source"] for e in self.edges if e["target"] == node_id]

    def ancestors(self, node_id: str) -> set[str]:
        """All ids upstream of ``node_id``."""
        out: set[str] = set()
        todo = [node_id]
        while todo:
            for p in self.parents(todo.pop()):
                if p not in out:
                    out.add(p)
                    todo.append(p)
        return out

    def find(self, kind: str | None = None, **meta: Any) -> list[str]:
        """Node ids of a given kind whose fields equal ``meta``."""
        return [k for k, v in self.nodes.items()
                if (kind is None or v["kind"] == kind) and all(v.get(a) == b for a, b in meta.items())]

    # ----------------------------------------------------------------- export
    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": self.edges}

    def to_json(self) -> str:
        """JSON text (sorted keys, stable)."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "Lineage":
        """Rebuild from :meth:`to_json` output."""
        try:
            d = json.loads(text)
            nodes, edges = dict(d["nodes"]), list(d["edges"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LineageError(f"Not a lineage JSON document ({type(exc).__name__}: {exc}).") from exc
        lin = cls()
        lin.nodes = nodes
        for e in edges:
            lin.add_edge(e["source"], e["target"], e["operation"])
        return lin

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph (render with ``dot -Tsvg``)."""
        shapes = {"twin": "box", "data": "cylinder", "result": "ellipse", "component": "note",
                  "output": "doubleoctagon"}
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for k in sorted(self.nodes):
            v = self.nodes[k]
            label = f"{v['kind']}: {v['label']}\\n{v['hash'][:12]}".replace('"', "'")
            lines.append(f'  "{k}" [label="{label}", shape={shapes.get(v["kind"], "ellipse")}];')
        for e in self.edges:
            lines.append(f'  "{e["source"]}" -> "{e["target"]}" [label="{e["operation"]}"];')
        lines.append("}")
        return "\n".join(lines)


def attach_lineage(obj: xr.Dataset | xr.DataArray, lineage: Lineage) -> xr.Dataset | xr.DataArray:
    """Store ``lineage`` as JSON in ``obj.attrs["lineage"]`` (in place) and return ``obj``."""
    obj.attrs[ATTR_KEY] = lineage.to_json()
    return obj


def lineage_of(obj: Any) -> Lineage:
    """The lineage stored with an xarray object or a TwinResult (``info["lineage"]``).

    Raises
    ------
    LineageError
        When ``obj`` carries no lineage.
    """
    if isinstance(obj, (xr.Dataset, xr.DataArray)):
        text = obj.attrs.get(ATTR_KEY)
    else:
        text = getattr(obj, "info", {}).get(ATTR_KEY)
    if not text:
        raise LineageError(
            f"{type(obj).__name__} carries no lineage (no '{ATTR_KEY}' attribute); only outputs of "
            "vvuq_twin.operations record one."
        )
    return Lineage.from_json(text)


def _parents_of(result: Any) -> list[Lineage]:
    text = getattr(result, "info", {}).get(ATTR_KEY)
    return [Lineage.from_json(text)] if text else []


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str)) if not isinstance(v, Mapping) else {
        str(k): _jsonable(x) for k, x in v.items()}
