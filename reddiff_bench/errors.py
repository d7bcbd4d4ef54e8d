"""User-facing errors: printed as one clear message (cause and fix), without a traceback."""


class ConfigError(Exception):
    """Bad input that the user can fix: a missing file, an unknown option, a wrong shape."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT: Ctrl-C; SIGTERM: what SLURM and most schedulers
    send). Finished rows are kept and the same command resumes; ``exit_status`` is 128 + the
    signal's number, as a shell reports it."""

    def __init__(self, signal_number: int, name: str):
        super().__init__(name)
        self.signal_number, self.name = signal_number, name

    @property
    def exit_status(self) -> int:
        return 128 + self.signal_number
