"""User-facing errors: printed as one clear message (cause and fix), without a traceback."""


class ConfigError(Exception):
    """Bad input that the user can fix: a missing file, an unknown option, a wrong shape."""
