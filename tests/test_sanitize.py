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
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("xeontl: error: cannot read"), r.stderr
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]0;pwn\\x07\\u202e\\nxeontl: done" in r.stderr
    assert not (tmp_path / "o").exists()


def test_one_line_takes_an_exception_as_the_cli_gives_it():
    assert one_line(UserError("lock note \x1b[2J\nfake")) == "lock note \\x1b[2J\\nfake"


# ------------------------------------------------------------------------------------------------ review round 2
@pytest.mark.parametrize("message,shown", [
    ("x" * 2000, "x" * 2000),
    ("x" * 2001, "x" * 2000 + "... (1 more)"),
    ("\x1b" * 1000, "\\x1b" * 500 + "... (2000 more)"),  # counted after escaping
    ("y" * 10**6, "y" * 2000 + f"... ({10**6 - 2000} more)"),
])
def test_an_error_line_is_cut_and_says_how_much_more(message, shown):
    assert one_line(message) == shown


@pytest.mark.parametrize("fn,value,shown", [
    (sanitize.lines, "env A=\x1b]0;x\x07\nline 2\u202e", "env A=\\x1b]0;x\\x07\nline 2\\u202e"),
    (sanitize.lines, "a\rb\n\nc", "a\\rb\n\nc"),
    (sanitize.cell, "ok | fake column `code`", "ok \\| fake column \\`code\\`"),
    (sanitize.cell, "done\n| forged | row |", "done\\n\\| forged \\| row \\|"),
    (sanitize.cell, "z" * 300, "z" * 197 + "..."),
])
def test_multi_line_text_and_report_cells(fn, value, shown):
    assert fn(value) == shown


@pytest.mark.parametrize("encoding,note,written", [
    ("ascii", "run Mélange 漢字", b"run M\\xe9lange \\u6f22\\u5b57\n"),
    ("latin-1", "run Mélange 漢字", "run Mélange \\u6f22\\u5b57\n".encode("latin-1")),
    ("utf-8", "run Mélange 漢字", "run Mélange 漢字\n".encode()),
])
def test_a_stream_that_cannot_encode_a_letter_writes_its_escape(encoding, note, written):
    """Review item 7: an ASCII terminal (PYTHONIOENCODING=ascii) and a holder note with letters it cannot write: a
    UnicodeEncodeError traceback. The CLI and the tasks make their streams write such a letter as its escape."""
    import io

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="strict")
    sanitize.safe_streams(stream)
    print(note, file=stream)
    stream.flush()
    assert raw.getvalue() == written


CLI = [
    # what, argv after `python -m xeontl`, env, stderr must hold (escaped), exit code
    ("an unknown argument with an OSC retitle", ["reproduce", "\x1b]0;PWN\x07"], {},
     "unrecognized arguments: \\x1b]0;PWN\\x07", 2),
    ("a bad choice with a forged line", ["train", "--horovod", "x\nxeontl: done: val accuracy 0.9999"], {},
     "invalid choice: 'x\\nxeontl: done: val accuracy 0.9999'", 2),
    ("a bad choice with a bidi override, on an ASCII terminal", ["train", "--horovod", "é\u202e"],
     {"PYTHONIOENCODING": "ascii"}, "invalid choice: '\\xe9\\u202e'", 2),
]


@pytest.mark.parametrize("what,argv,env,shown,code", CLI, ids=[c[0] for c in CLI])
def test_an_argparse_error_is_one_escaped_line(what, argv, env, shown, code):
    """Review item 6: argparse's own error line quoted the bad argument raw (`xeontl reproduce $'\\e]0;PWN\\a'`
    retitled the terminal)."""
    r = run([sys.executable, "-m", "xeontl", *argv], timeout=scaled(120), env=env)
    assert r.returncode == code, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("xeontl") and ": error: " in last and shown in last, r.stderr
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_deeply_nested_launch_record_on_resume_is_one_line(tmp_path):
    """Review item 7: a launch.json nested 10^5 deep under --resume --dry-run: one line, exit 2, no RecursionError."""
    r = tmp_path / "results" / "run1"
    (r / "checkpoints" / "epoch-0001").mkdir(parents=True)
    cfg = run([sys.executable, "-m", "xeontl", "config", "--profile", "demo"], timeout=scaled(120))
    (r / "config.json").write_text(cfg.stdout)
    (r / "launch.json").write_text("[" * 10**5 + "]" * 10**5)
    (r / "metrics.json").write_text('{"status": "failed"}')
    got = run([sys.executable, "-m", "xeontl", "reproduce", "--dry-run", "--resume", str(r), "--results-dir",
               str(tmp_path / "results")], timeout=scaled(120))
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and "Traceback" not in got.stderr, got.stderr
    assert "launch.json: nested more than" in got.stderr, got.stderr


@pytest.mark.parametrize("value,refused", [
    ("granularity=fine,compact,1,0", False),
    ("a\x1b]0;x\x07", True),  # C0 (refused before this round too)
    ("a\x9b2J", True),  # C1: a one-byte CSI
    ("a\u202eb", True),  # a bidi override
    ("a\u2028b", True),  # a line separator
])
def test_a_resumed_runs_env_value_is_refused_with_any_unsafe_character(value, refused):
    """Review item 6: --resume's extra_env values reach the plan (--dry-run, command.txt); C0 was refused, C1 and
    bidi were printed raw."""
    from xeontl.launch import options

    opts = options.Options(extra_env={"KMP_AFFINITY": value}, dry_run=True)
    if refused:
        with pytest.raises(UserError, match="without control characters"):
            options.check(opts)
    else:
        assert options.check(opts).extra_env == {"KMP_AFFINITY": value}


def test_compare_prints_record_values_escaped(monkeypatch, capsys):
    """Review item 6: `invoke compare` printed two runs' record values raw (a metrics.json status with ESC/OSC)."""
    from invoke import Context

    import tasks
    from xeontl.records import report

    monkeypatch.setattr(report, "compare", lambda a, b: [("status\x1b[2J", "done\x1b]0;PWN\x07", "fail\u202eed\nx")])
    tasks.compare.body(Context(), "a", "b")
    out = capsys.readouterr().out
    assert out == "status\\x1b[2J\n  A: done\\x1b]0;PWN\\x07\n  B: fail\\u202eed\\nx\n", out
