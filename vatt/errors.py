"""Errors every layer may raise, kept below all of them so that raising one imports nothing else."""


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line with the fix."""
