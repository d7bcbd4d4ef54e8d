"""Solvers of inverse problems with a diffusion prior, one algorithm per module."""

from .base import Callback, Solver, SolverResult
from .daps import DAPS
from .ddim import DDIM
from .ddnm import DDNM
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .mcgdiff import MCGdiff
from .pgdm import PiGDM
from .pinv import PseudoInverse
from .reddiff import REDDiff
from .reddiff_parallel import REDDiffParallel

__all__ = ["Callback", "DAPS", "DDIM", "DDNM", "DDRM", "DPS", "DiffPIR", "MCGdiff", "PiGDM", "PseudoInverse", "REDDiff",
           "REDDiffParallel", "Solver", "SolverResult"]
