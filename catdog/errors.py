"""The one error type the CLI turns into a one-line message and exit status 2."""


class CatdogError(Exception):
    """A user-facing error: the message names the file or input, the reason, and what to do."""
