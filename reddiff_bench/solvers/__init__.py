"""Solvers of inverse problems with a diffusion prior, one algorithm per module."""

from .base import Callback, Solver, SolverResult
from .ddim import DDIM
from .ddrm import DDRM
from .dps import DPS
from .pgdm import PiGDM
from .pinv import PseudoInverse
from .reddiff import REDDiff

__all__ = ["Callback", "DDIM", "DDRM", "DPS", "PiGDM", "PseudoInverse", "REDDiff", "Solver", "SolverResult"]
