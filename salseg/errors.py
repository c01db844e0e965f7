"""Errors that the CLI turns into a one-line message and a non-zero exit code (never a traceback)."""


class SalsegError(Exception):
    """A problem with the user's input or environment. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DataError(SalsegError):
    """Bad or inconsistent data on disk (integrity problems exit with 2)."""

    exit_code = 2


class ConfigError(SalsegError):
    """A configuration file (plans, config.json, dataset.json) is missing a field or has a bad value."""

    exit_code = 2


class ResourceError(SalsegError):
    """The environment refused a write: no space left, permission denied, read-only file system."""

    exit_code = 2
