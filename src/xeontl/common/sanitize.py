"""Foreign text made safe to show: every character that could move the cursor, recolour or retitle a terminal, reorder
what is shown, or start a new line is written as its escape (`\\x1b`, `\\n`, `\\u202e`), the rest kept as it is.

Foreign text is anything another user, another machine or a damaged file could have chosen: another run's CPU lock
note, a path or a value quoted in an error line, a field read back from a record. Shown raw, it can forge lines (a fake
"done: val accuracy 0.9999"), hide or retitle with ESC/OSC/CSI sequences, or reorder a line with bidi overrides.

What is escaped (Unicode general categories, so no list goes stale):
  - Cc: C0 (U+0000-U+001F, tab and newline too), DEL (U+007F) and C1 (U+0080-U+009F; U+009B is a one-byte CSI);
  - Cf: format characters, among them the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069),
    the marks U+200E/U+200F/U+061C, zero-width characters and the BOM;
  - Zl, Zp: the line and paragraph separators U+2028, U+2029;
  - Cs: lone surrogates (what `surrogateescape` makes of bytes that are not UTF-8).
ESC/OSC/CSI sequences are thereby harmless: their introducers (ESC, U+009B, U+009D) are escaped, the printable rest
stays as text.
"""

from __future__ import annotations

import unicodedata

ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def unsafe(c: str) -> bool:
    """Whether the character C is one `text` escapes."""
    return unicodedata.category(c) in ESCAPED


def _escape(c: str) -> str:
    return c.encode("unicode_escape").decode("ascii")  # \n, \t, \x1b, \x9b, \u202e, \ud800, \U000e0001


def text(value: object, limit: int | None = None) -> str:
    """VALUE (str() of it) with every unsafe character written as its escape; longer than LIMIT characters (counted
    after escaping), cut and ended with '...'."""
    out = "".join(_escape(c) if unsafe(c) else c for c in str(value))
    return out if limit is None or len(out) <= limit else out[:max(limit - 3, 0)] + "..."


def has_unsafe(value: str) -> bool:
    """Whether VALUE holds any character `text` would escape (for refusing, rather than escaping, a value)."""
    return any(unsafe(c) for c in value)


def lines(value: str) -> str:
    """Multi-line text of our own making that quotes foreign values (a plan with its env, a launch line): every line
    through `text`, the newlines between them kept."""
    return "\n".join(text(line) for line in str(value).split("\n"))


def cell(value: object, limit: int | None = 200) -> str:
    """A foreign value shown in a Markdown table cell or line of report.md (a metrics.json status, a notice, a config
    value read back): `text`, with `|` escaped so it cannot open a column, and `` ` `` so it cannot open code."""
    return text(value, limit).replace("|", "\\|").replace("`", "\\`")


def safe_streams(*streams) -> None:
    """Let STREAMS (default stdout and stderr) write any character on any terminal: what the stream's encoding cannot
    write (a holder note's letters on an ASCII terminal) is written as its backslash escape, never an exception."""
    import sys

    for stream in streams or (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (a test's capture): left as it is
            pass
