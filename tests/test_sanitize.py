"""Foreign text on the terminal and in error lines: one sanitizer (xeontl.common.sanitize), and every error line
through it (errors.one_line). Issue 39, item 7: another user's lock note forged a "done: val accuracy" line and
reached the terminal with its ESC/OSC sequences."""

import sys
import unicodedata

import pytest

from conftest import run, scaled
from xeontl.common import sanitize
from xeontl.common.errors import LINE_BREAKS, UserError, one_line

# (what, foreign text, what must be shown): one case per class the sanitizer escapes, and what it must keep.
CASES = [
    ("ESC CSI colour", "\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("OSC retitle, BEL-ended", "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("OSC 8 hyperlink, ST-ended", "\x1b]8;;http://x\x1b\\", "\\x1b]8;;http://x\\x1b\\"),
    ("C1 one-byte CSI", "\x9b2J", "\\x9b2J"),
    ("C1 one-byte OSC", "\x9d0;t\x9c", "\\x9d0;t\\x9c"),
    ("C1 NEL", "a\x85b", "a\\x85b"),
    ("NUL", "a\x00b", "a\\x00b"),
    ("DEL", "a\x7fb", "a\\x7fb"),
    ("backspace over a word", "good\x08\x08\x08\x08evil", "good\\x08\\x08\\x08\\x08evil"),
    ("carriage return rewrites the line", "ok\rFAIL", "ok\\rFAIL"),
    ("a forged line", "x\nxeontl: done: val accuracy 0.9999", "x\\nxeontl: done: val accuracy 0.9999"),
    ("tab", "a\tb", "a\\tb"),
    ("vertical tab, form feed", "a\x0b\x0cb", "a\\x0b\\x0cb"),
    ("line separator", "a\u2028b", "a\\u2028b"),
    ("paragraph separator", "a\u2029b", "a\\u2029b"),
    ("bidi override RLO", "run-\u202egpj.exe", "run-\\u202egpj.exe"),
    ("bidi isolates", "\u2066a\u2067b\u2068c\u2069", "\\u2066a\\u2067b\\u2068c\\u2069"),
    ("bidi marks", "\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
    ("zero-width space and BOM", "a\u200bb\ufeff", "a\\u200bb\\ufeff"),
    ("a lone surrogate (bytes not UTF-8)", b"run-\xff".decode("utf-8", "surrogateescape"), "run-\\udcff"),
    ("a tag character", "a\U000e0041", "a\\U000e0041"),
    ("plain ASCII kept", "run-20261206-012345 (pid 42)", "run-20261206-012345 (pid 42)"),
    ("letters of any script kept", "Mélange 漢字 Ελληνικά", "Mélange 漢字 Ελληνικά"),
    ("a backslash kept", "C:\\path", "C:\\path"),
    ("not a string", 42, "42"),
]


@pytest.mark.parametrize("what,foreign,shown", CASES, ids=[c[0] for c in CASES])
def test_the_sanitizer_escapes_what_could_drive_a_terminal_and_keeps_text(what, foreign, shown):
    assert sanitize.text(foreign) == shown
    assert one_line(foreign) == shown  # every error line goes through the same sanitizer
    assert sanitize.has_unsafe(str(foreign)) == (shown != str(foreign))


def test_no_character_survives_that_is_a_control_a_format_or_a_line_break():
    """Every code point of the planes that have any (BMP, SMP, and plane 14's tag characters): what is shown is one
    line of printable text (no Cc, Cf, Zl, Zp, Cs, and no line break str.splitlines knows)."""
    for o in [*range(0x20000), *range(0xE0000, 0xE1000)]:
        c = chr(o)
        shown = sanitize.text(c)
        if shown != c:
            assert shown.isascii() and shown.isprintable() and shown.startswith("\\"), hex(o)
        else:
            assert unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Cs"), hex(o)
            assert len(("a" + shown + "a").splitlines()) == 1, hex(o)
    assert all(sanitize.text(c) != c for c in LINE_BREAKS)


@pytest.mark.parametrize("value,limit,shown", [
    ("abcdef", 10, "abcdef"),
    ("abcdefghijkl", 10, "abcdefg..."),
    ("\x1b\x1b\x1b", 10, "\\x1b\\x1..."),  # cut after escaping: an escape never makes it longer than the limit
    ("abc", None, "abc"),
])
def test_a_limit_counts_what_is_shown(value, limit, shown):
    assert sanitize.text(value, limit) == shown
    assert limit is None or len(sanitize.text(value, limit)) <= limit


def test_an_error_line_from_the_cli_shows_foreign_text_escaped(tmp_path):
    """End to end: a path with ESC/OSC, a bidi override and a forged line reaches `xeontl: error:` escaped."""
    bad = "/nonexistent/\x1b]0;pwn\x07\u202e\nxeontl: done: val accuracy 0.9999"
    r = run([sys.executable, "-m", "xeontl", "train", "--output", str(tmp_path / "o"), "--config", bad],
            timeout=scaled(120))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("xeontl: error: cannot read config"), r.stderr
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]0;pwn\\x07\\u202e\\nxeontl: done" in r.stderr
    assert not (tmp_path / "o").exists()


def test_one_line_takes_an_exception_as_the_cli_gives_it():
    assert one_line(UserError("lock note \x1b[2J\nfake")) == "lock note \\x1b[2J\\nfake"
