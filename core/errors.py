"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A problem with input, configuration or files that the user can fix."""


class ConfigError(UserError):
    """An unknown configuration key or a value outside its valid choices."""


class RunError(UserError):
    """A run directory that is missing, incomplete, locked or not safe to load."""
