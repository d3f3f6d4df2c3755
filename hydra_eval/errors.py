"""Errors a user can cause; the CLI prints them as one line."""


class UserError(Exception):
    """Bad input: unknown config, missing data, malformed rows. The message says what to do. Running the job
    again gives the same error, so a sweep does not retry it unless `transient` is set."""

    transient = False


class HarnessError(UserError):
    """The harness failed, not the model (weights that did not load, a server that died): the job stops with
    this one line and nothing is scored."""
