"""Solvers of inverse problems with a diffusion prior, one algorithm per module."""

from .base import Callback, Solver, SolverResult
from .pinv import PseudoInverse
from .reddiff import REDDiff

__all__ = ["Callback", "PseudoInverse", "REDDiff", "Solver", "SolverResult"]
