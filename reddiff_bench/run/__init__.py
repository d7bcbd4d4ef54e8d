"""One run of a configuration: ``pipeline`` (run it), ``store`` (resume and ownership), ``outputs``
(per-image files), ``profile`` (memory per step), ``distributed`` (torchrun), ``launch`` (a GPU
slot per sweep job), ``loggers`` (W&B), ``settings`` (composition, resolvers, checks), ``grid``,
``train`` (the small offline prior)."""
