"""Errors a user can cause; the CLI prints them as one line."""


class UserError(Exception):
    """Bad input: unknown config, missing data, malformed rows. The message says what to do. Running the job
    again gives the same error, so a sweep does not retry it unless `transient` is set."""

    transient = False
