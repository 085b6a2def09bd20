"""Parameter spaces (defined in :mod:`vvuq_twin.spaces`, shared with the surrogates; re-exported here)."""

from __future__ import annotations

from ..spaces import ParameterSpace, PosteriorSpace, UncertainInput, as_space  # noqa: F401

__all__ = ["UncertainInput", "ParameterSpace", "PosteriorSpace", "as_space"]
