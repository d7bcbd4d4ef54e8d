"""Many runs: ``studies`` (experiments/<study>: run, collect, build), ``sweeps`` (the jobs of a
sweep), ``tables`` (the one table engine), ``figures``, ``report`` (tables of any folder of runs,
and the sweep's own), ``dashboard`` (W&B), ``bench`` and ``estimate`` (cost)."""
