"""The VVUQ loop as a library capability: typed steps, gates that hold, resumable runs.

A loop is assembled from small role objects (after emukit's outer loop), each returning a
typed :class:`StepResult` with a :class:`Status` (PASS / WARN / FAIL / NOT APPLICABLE /
NOT INFORMATIVE / RECORD) and its reason, and each writing a ledger entry:

* :class:`Verify` - order of accuracy of the discretisation the twin runs (NOT APPLICABLE for a
  closed form); :class:`SBC` - simulation-based calibration on the calibration design;
* :class:`Calibrate` - the gate is the sampler diagnostics;
* :class:`Validate` - coverage and median bias against bands a miscalibrated twin would leave,
  PIT uniformity; NOT INFORMATIVE for a hold-out too small to tell;
* :class:`Sensitivity` - given-data sensitivity of the QoI to the posterior parameters, consumed
  by :class:`Decide` and :class:`Steer`;
* :class:`Decide` (e.g. :func:`threshold_decision`), :class:`Steer`, :class:`Assimilate`
  (then another :class:`Validate` with ``source="assimilate"``), :class:`Operate`.

:class:`VVUQLoop` runs them in order: a step that needs a failed step refuses to run with a
:class:`GateError` saying what to do, or with ``on_fail="flag"`` runs and is marked
PROVISIONAL in the JSON summary, the HTML report and the ledger.

Example
-------
>>> import vvuq_twin as vt
>>> from vvuq_twin.loop import (VVUQLoop, DataSplit, QoI, Calibrate, Validate, Sensitivity,
...                             Decide, threshold_decision)
>>> qoi = QoI("theta", lambda res, seed: res.posterior["theta"])
>>> loop = VVUQLoop(twin, DataSplit(cal, holdout), [
...     Calibrate(draws=500, chains=2), Validate(), Sensitivity(qoi=qoi),
...     Decide(qoi=qoi, decide=threshold_decision(0.7, 0.1))], seed=7, out="out/loop")  # doctest: +SKIP
>>> result = loop.run()                                                               # doctest: +SKIP
"""

from .runner import LoopResult, VVUQLoop
from .status import (PROVISIONAL, DiagnosticsGateError, GateError, Status, StepResult,
                     ValidationGateError)
from .steps import (SBC, Assimilate, Calibrate, DataSplit, Decide, LoopContext, LoopSpecError,
                    Operate, QoI, Sensitivity, Steer, Step, Validate, Verify, threshold_decision)

__all__ = [
    "VVUQLoop", "LoopResult", "DataSplit", "QoI", "LoopContext", "Step", "StepResult", "Status",
    "Verify", "SBC", "Calibrate", "Validate", "Sensitivity", "Decide", "Steer", "Assimilate",
    "Operate", "threshold_decision", "GateError", "DiagnosticsGateError", "ValidationGateError",
    "LoopSpecError", "PROVISIONAL",
]
