"""Method of manufactured solutions (code verification).

Choose a smooth function ``u(x, t)`` (the manufactured solution), apply the PDE operator to it
symbolically, and add the result as a source term: the solver must then reproduce ``u`` up to
its discretisation error, whose decay under refinement is the observed order of accuracy
(Roache 2002, "Code verification by the method of manufactured solutions", J. Fluids Eng.
124:4-10; Salari & Knupp 2000).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sympy as sp

from ._errors import ManufacturedSolutionError

__all__ = ["ManufacturedSolution", "manufacture"]


def _lambdify(expr: sp.Expr, symbols: tuple[sp.Symbol, ...]) -> Callable[..., np.ndarray]:
    f = sp.lambdify(symbols, expr, modules="numpy")

    def wrapped(*args: Any) -> np.ndarray:
        arrays = [np.asarray(a, dtype=float) for a in args]
        out = np.asarray(f(*arrays), dtype=float)
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
        return np.broadcast_to(out, shape).copy() if out.shape != shape else out

    wrapped.__doc__ = f"Evaluate {expr} at ({', '.join(map(str, symbols))})."
    return wrapped


@dataclass(frozen=True)
class ManufacturedSolution:
    """A manufactured solution with its source term, both as sympy expressions and numpy callables.

    Attributes
    ----------
    solution_expr : sympy.Expr
        The manufactured solution ``u``.
    source_expr : sympy.Expr
        ``L(u)``: the source to add so that ``u`` solves ``L(u) = s``.
    variables : tuple of sympy.Symbol
        Independent variables, in the order the numpy callables take them.
    exact, source : callable
        ``exact(*variables)`` and ``source(*variables)`` evaluated with numpy (broadcasting).
    """

    solution_expr: sp.Expr
    source_expr: sp.Expr
    variables: tuple[sp.Symbol, ...]
    exact: Callable[..., np.ndarray] = field(repr=False, compare=False)
    source: Callable[..., np.ndarray] = field(repr=False, compare=False)

    def derivative(self, *wrt: str | sp.Symbol) -> Callable[..., np.ndarray]:
        """Numpy callable of a derivative of the solution (e.g. for Neumann boundary data)."""
        syms = [self._symbol(w) for w in wrt]
        return _lambdify(sp.diff(self.solution_expr, *syms), self.variables)

    def _symbol(self, w: str | sp.Symbol) -> sp.Symbol:
        for v in self.variables:
            if v == w or v.name == str(w):
                return v
        raise ManufacturedSolutionError(
            f"Unknown variable {w!r}; the manufactured solution depends on "
            f"{[v.name for v in self.variables]}."
        )


def manufacture(
    solution: sp.Expr | str,
    operator: Callable[..., sp.Expr],
    variables: Sequence[str | sp.Symbol] = ("x", "t"),
    *,
    parameters: Mapping[str | sp.Symbol, float] | None = None,
) -> ManufacturedSolution:
    """Derive the source term of a manufactured solution.

    Parameters
    ----------
    solution : sympy expression or str
        The manufactured solution, e.g. ``"sin(pi*x)*exp(-t)"``.
    operator : callable
        ``operator(u, *variables) -> sympy.Expr``: the PDE residual operator ``L`` such that the
        PDE reads ``L(u) = s``; e.g. for ``u_t = D u_xx - k u + s``:
        ``lambda u, x, t: sp.diff(u, t) - D*sp.diff(u, x, 2) + k*u``.
    variables : sequence of str or Symbol
        Independent variables, in the order the returned callables take them.
    parameters : mapping, optional
        Values substituted for any other symbols in the solution or operator output.

    Returns
    -------
    ManufacturedSolution

    Raises
    ------
    ManufacturedSolutionError
        If the solution cannot be parsed, the operator does not return a sympy expression, or
        symbols other than ``variables`` remain after substituting ``parameters``.

    Examples
    --------
    >>> import sympy as sp
    >>> ms = manufacture("sin(pi*x)", lambda u, x: -sp.diff(u, x, 2), ["x"])
    >>> ms.source_expr
    pi**2*sin(pi*x)
    """
    if not variables:
        raise ManufacturedSolutionError("`variables` must name at least one independent variable, e.g. ('x', 't').")
    syms = tuple(v if isinstance(v, sp.Symbol) else sp.Symbol(str(v), real=True) for v in variables)
    if len({s.name for s in syms}) != len(syms):
        raise ManufacturedSolutionError(f"`variables` must be distinct, got {[s.name for s in syms]}.")
    local = {s.name: s for s in syms}
    try:
        u = sp.sympify(solution, locals=local) if isinstance(solution, str) else sp.sympify(solution)
    except (sp.SympifyError, SyntaxError, TypeError) as exc:
        raise ManufacturedSolutionError(
            f"Cannot parse the manufactured solution {solution!r} with sympy: {exc}."
        ) from exc
    # identify variables given as plain Symbols without assumptions with ours
    u = u.subs({sp.Symbol(s.name): s for s in syms})
    try:
        lu = operator(u, *syms)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ManufacturedSolutionError(
            f"The PDE operator failed on the manufactured solution: {type(exc).__name__}: {exc}. "
            f"It is called as operator(u, {', '.join(s.name for s in syms)}) with sympy objects."
        ) from exc
    if not isinstance(lu, sp.Basic):
        raise ManufacturedSolutionError(
            f"The PDE operator must return a sympy expression, got {type(lu).__name__}. Use sympy "
            "functions (sp.diff, sp.sin, ...) inside it, not numpy ones."
        )
    lu = sp.sympify(lu).subs({sp.Symbol(s.name): s for s in syms})
    if parameters:
        subs = {}
        for k, v in parameters.items():
            name = k.name if isinstance(k, sp.Symbol) else str(k)
            for sym in (u.free_symbols | lu.free_symbols):
                if sym.name == name:
                    subs[sym] = v
        u, lu = u.subs(subs), lu.subs(subs)
    for label, expr in (("solution", u), ("source", lu)):
        extra = sorted(s.name for s in expr.free_symbols if s not in syms)
        if extra:
            raise ManufacturedSolutionError(
                f"The manufactured {label} still contains symbols {extra} besides the variables "
                f"{[s.name for s in syms]}. Pass their values with parameters={{...}} or add them "
                "to `variables`."
            )
    if not any(s in u.free_symbols for s in syms):
        raise ManufacturedSolutionError(
            f"The manufactured solution {u} does not depend on any of {[s.name for s in syms]}; a "
            "constant cannot exercise the discretisation. Use e.g. sin(pi*x)*exp(-t)."
        )
    lu = sp.simplify(lu)
    return ManufacturedSolution(
        solution_expr=u,
        source_expr=lu,
        variables=syms,
        exact=_lambdify(u, syms),
        source=_lambdify(lu, syms),
    )
