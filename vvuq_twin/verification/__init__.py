"""Verification of a digital twin: code, solution and inference verification.

- Code verification: :func:`manufacture` (method of manufactured solutions, sympy) and
  :func:`observed_order` (least-squares observed order of accuracy vs the theoretical order).
- Solution verification: :func:`gci` (Richardson extrapolation and the Grid Convergence Index
  of Celik et al. 2008, with the numerical uncertainty ``u_num`` for a validation budget).
- Inference verification: :func:`sbc` (simulation-based calibration with rank statistics of
  parameters and the joint log-likelihood, simultaneous ECDF bands) and :func:`sbc_twin` for a
  :class:`~vvuq_twin.Twin`.
"""

from ._errors import (
    ConvergenceWarning,
    ManufacturedSolutionError,
    RefinementError,
    SBCError,
    SBCWarning,
    VerificationError,
)
from .gci import GCIResult, gci, representative_grid_size, richardson_extrapolate
from .mms import ManufacturedSolution, manufacture
from .order import OrderResult, check_refinement, observed_order
from .sbc import SBCResult, ecdf_band, rank_uniformity, sbc
from .twin_sbc import check_proper_priors, sbc_twin

__all__ = [
    "ConvergenceWarning",
    "ManufacturedSolutionError",
    "RefinementError",
    "SBCError",
    "SBCWarning",
    "VerificationError",
    "GCIResult",
    "gci",
    "representative_grid_size",
    "richardson_extrapolate",
    "ManufacturedSolution",
    "manufacture",
    "OrderResult",
    "check_refinement",
    "observed_order",
    "SBCResult",
    "ecdf_band",
    "rank_uniformity",
    "sbc",
    "check_proper_priors",
    "sbc_twin",
]
