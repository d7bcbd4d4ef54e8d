"""The commands: ``python -m reddiff_bench [overrides]`` runs, ``python -m reddiff_bench COMMAND ...``
the others (``COMMANDS``). Each module is thin: arguments in, one call into ``study`` or ``run``."""

# command -> module of this package with a main(); the Hydra app (a run or a sweep) is cli.main
COMMANDS = {
    "paper": "paper",          # run the studies of experiments/, build their tables and figures
    "report": "report",        # the table of every run below a folder
    "estimate": "estimate",    # device-hours of a sweep before it runs
    "bench": "bench",          # each solver against the floor of its network calls
    "train": "train",          # train the small offline prior (conf/train.yaml)
    "dashboard": "dashboard",  # a W&B report of a study
    "convert-adm": "convert_adm",  # a guided-diffusion checkpoint into a diffusers folder
    "fid-stats": "fid_stats",  # FID statistics (and features) of a folder of images: metrics.fid_reference
    "tune": "tune",            # equal-budget tuning on the validation split (optuna; conf/search, conf/tuned)
}
