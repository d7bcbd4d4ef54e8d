"""reddiff_bench: a benchmark of diffusion-model solvers for inverse problems.

The package is layered, each layer importing only the ones below it (checked by
``tests/test_layers.py``):

* the domain, at the top of the package: ``diffusion``, ``operators``, ``tasks``, ``priors``,
  ``solvers``, ``metrics``, ``data`` and the small utilities they share (``errors``, ``checks``,
  ``files``);
* ``run``: one run of a configuration (the pipeline, its store, outputs, processes, loggers and
  settings);
* ``study``: many runs (sweeps, tables, figures, reports, the bench and the estimate);
* ``cli``: the commands, ``python -m reddiff_bench [COMMAND]``.

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
