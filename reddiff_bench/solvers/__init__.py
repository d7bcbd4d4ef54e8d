"""Solvers of inverse problems with a diffusion prior, one algorithm per module. Pixel solvers
take pixel priors; the latent ones (``space = "latent"``: LatentDPS, PSLD, ReSample, LatentDAPS,
LatentREDDiff) take latent priors (``priors/latent.py``)."""

from .base import Callback, Solver, SolverResult
from .daps import DAPS
from .ddim import DDIM
from .ddnm import DDNM
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .latent_daps import LatentDAPS
from .latent_dps import LatentDPS
from .latent_reddiff import LatentREDDiff
from .mcgdiff import MCGdiff
from .pgdm import PiGDM
from .pinv import PseudoInverse
from .psld import PSLD
from .reddiff import REDDiff
from .reddiff_parallel import REDDiffParallel
from .resample import ReSample

__all__ = ["Callback", "DAPS", "DDIM", "DDNM", "DDRM", "DPS", "DiffPIR", "LatentDAPS", "LatentDPS", "LatentREDDiff",
           "MCGdiff", "PSLD", "PiGDM", "PseudoInverse", "REDDiff", "REDDiffParallel", "ReSample", "Solver",
           "SolverResult"]
