"""One helper that turns every accepted seed form into a :class:`numpy.random.Generator`.

Every random operation in vvuq_twin takes ``rng: Generator | int | None``; this module is the
single place where that keyword is normalised, and where child seeds are spawned.
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = ["RNGLike", "as_generator", "spawn_seeds", "seed_int"]

RNGLike = Union[np.random.Generator, int, np.integer, np.random.SeedSequence, None]


def as_generator(rng: RNGLike = None) -> np.random.Generator:
    """Return a Generator for ``rng``.

    Parameters
    ----------
    rng : Generator, int, SeedSequence or None
        ``None`` gives fresh OS entropy (not reproducible); an integer or SeedSequence seeds a new
        PCG64 generator; a Generator is returned unchanged (shared state).
    """
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        if int(rng) < 0:
            raise ValueError(f"A seed must be a non-negative integer, got rng={rng}.")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(
        "Expected `rng` to be a numpy.random.Generator, an int seed, a SeedSequence or None, "
        f"got {type(rng).__name__}."
    )


def seed_int(rng: RNGLike = None) -> int:
    """Draw one 32-bit integer seed from ``rng`` (for libraries that take an int seed)."""
    return int(as_generator(rng).integers(0, 2**31 - 1))


def spawn_seeds(rng: RNGLike, n: int) -> list[int]:
    """Return ``n`` independent integer child seeds derived reproducibly from ``rng``."""
    if n < 0:
        raise ValueError(f"Expected a non-negative number of seeds, got n={n}.")
    base = seed_int(rng)
    children = np.random.SeedSequence(base).spawn(n)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]
