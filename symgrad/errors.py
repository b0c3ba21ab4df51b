"""User-facing errors: each message names the problem and where it is."""


class UserError(Exception):
    """A mistake in what the user gave (a file, an option): one line, exit code 1."""
