"""User mistakes end in one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = 2
