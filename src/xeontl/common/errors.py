"""User mistakes end in one line and a non-zero exit, never a traceback."""

from xeontl.common import sanitize


class UserError(Exception):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = 2


# What str.splitlines breaks a line at: a value quoted in a message (a path, a flag's value) cannot make it two lines.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


MAX_LINE = 2000  # a message longer than this (a huge value quoted in it) is cut: "... (N more)"


def one_line(message: object) -> str:
    """MESSAGE as one line, safe on a terminal: every line-breaking, control, escape or bidi character in it (all of
    LINE_BREAKS among them) written as its escape, by the one sanitizer for foreign text (common/sanitize.py); cut
    after MAX_LINE characters, saying how many more there were."""
    out = sanitize.text(message)
    return out if len(out) <= MAX_LINE else f"{out[:MAX_LINE]}... ({len(out) - MAX_LINE} more)"


class RunError(UserError):
    """Not the user's mistake but the run's surroundings (a full disk): one line too, and the exit code of a failed
    run, 1."""

    exit_code = 1
