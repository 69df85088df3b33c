"""User mistakes end in one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = 2


# What str.splitlines breaks a line at: a value quoted in a message (a path, a flag's value) cannot make it two lines.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(message: str) -> str:
    """MESSAGE as one line: every line-breaking character in it written as its escape."""
    return "".join(c.encode("unicode_escape").decode() if c in LINE_BREAKS else c for c in str(message))


class RunError(UserError):
    """Not the user's mistake but the run's surroundings (a full disk): one line too, and the exit code of a failed
    run, 1."""

    exit_code = 1
