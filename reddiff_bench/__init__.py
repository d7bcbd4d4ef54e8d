"""reddiff_bench: a benchmark of diffusion-model solvers for inverse problems.

Conventions used everywhere in the package:

* images are float32 NCHW tensors in [-1, 1];
* the measurement noise ``sigma_y`` is the standard deviation of Gaussian noise added to
  ``A(x)`` on that same [-1, 1] scale (the reference RED-diff code doubles a [0, 1]-scale value;
  we never rescale);
* diffusion is variance preserving in discrete time,
  ``x_t = alpha_t x0 + sigma_t eps`` with ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``
  and integer ``t`` in ``0..T-1``.
"""

__version__ = "0.1.0"

from .resolvers import register as _register_resolvers  # noqa: E402

_register_resolvers()  # ${published:...}, ${launch_slots:...}, ${dirname:...} in conf/
