"""The shared CPU lock dir against a hostile second user, second round (issue 39 review): root takes a lock file over
before it re-checks the name, the lock dir is reached from / through dirs no other user can change and never through a
link, only a file the run made is chmodded, a taken-over file loses its ACL, and the messages say what is true. Other
users are forked children that setuid (tests/test_locks.py's as_uid), each bounded in time."""

import json
import os
import struct
from pathlib import Path

import pytest
from test_locks import NOBODY, OTHER, ROOT_ONLY, as_uid, held, make_dir, tree

from xeontl.common.errors import UserError
from xeontl.launch import cpulock

ACL = "system.posix_acl_access"


def _deny_acl(uid: int) -> bytes:
    """A POSIX ACL (the kernel's xattr form): owner rw, user UID nothing, group rw, mask rw, other rw."""
    entries = [(0x01, 6, 2**32 - 1), (0x02, 0, uid), (0x04, 6, 2**32 - 1), (0x10, 6, 2**32 - 1), (0x20, 6, 2**32 - 1)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


# ------------------------------------------------------------------------------------------------ the fchown gap
@ROOT_ONLY
@pytest.mark.parametrize("when", ["after the name check", "before the name check"])
def test_the_maker_cannot_unlink_a_lock_file_root_has_checked(shared, monkeypatch, when):
    """Review item 1: root checked that the name still names the locked file, then fchowned it; the maker unlinked it
    in that gap and a second run held the same CPU. Root now owns the file before the check: the maker's unlink, at
    either point, is refused (or, before a takeover, makes root take the lock again on what the name names now)."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    assert as_uid(NOBODY, held([0], "maker")) == ["ok", "held"]  # the maker's file, left behind, 0666
    real, tries = cpulock._names, []

    def names_with_the_maker_unlinking(dfd, name, fd):
        unlink = lambda: as_uid(NOBODY, lambda: os.unlink(d / name))  # noqa: E731
        if when.startswith("before") and not tries:
            tries.append(unlink())
        ok = real(dfd, name, fd)
        if when.startswith("after") and len(tries) < 1:
            tries.append(unlink())
        return ok
    monkeypatch.setattr(cpulock, "_names", names_with_the_maker_unlinking)
    with cpulock.hold([0], "root-run"):
        second = as_uid(OTHER, held([0], "second-run"))
        assert second[:2] == ["err", "UserError"] and "in use" in second[2], (tries, second)
        assert (d / "cpu-0.lock").stat().st_uid == 0
    assert tries and tries[0][:2] == ["err", "PermissionError"], tries  # the maker's unlink met root's file


# ------------------------------------------------------------------------------------------------ what root changes
def _made_by(uid: int, mode: int, body: bytes = b"", acl_for: int | None = None):
    def make(path: Path):
        def body_fn():
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
            os.write(fd, body)
            os.fchmod(fd, mode)
            os.close(fd)
            if acl_for is not None:
                os.setxattr(path, ACL, _deny_acl(acl_for))
        got = as_uid(uid, body_fn)
        if got[:2] == ["err", "OSError"] and "not supported" in got[2]:
            pytest.skip("no POSIX ACLs on this file system")
        assert got[0] == "ok", got
    return make


SECRET = b"root's secret\n"
FILES = [
    # what, made before root's run (None: missing), owner and mode after, body after (None: a note), ACL left,
    # OTHER holds after
    ("missing: made 0666 by root", None, 0, 0o666, None, False, True),
    ("a user's 0600 file: root's takeover makes it 0666 (shareable again)", _made_by(NOBODY, 0o600), 0, 0o666, None,
     False, True),
    ("a user's 0666 file with an ACL denying OTHER: the ACL is removed", _made_by(NOBODY, 0o666, acl_for=OTHER), 0,
     0o666, None, False, True),
    ("root's own 0600 file with data (planted by a rename): never chmodded, never written", _made_by(0, 0o600, SECRET),
     0, 0o600, SECRET, False, False),
    ("root's own 0644 lock file with an old note: not chmodded, the note rewritten",
     _made_by(0, 0o644, json.dumps({"run_id": "old", "pid": 1}).encode()), 0, 0o644, None, False, True),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,make,uid,mode,body,acl,other_holds", FILES, ids=[c[0] for c in FILES])
def test_root_chmods_only_what_it_made_or_took_over(shared, monkeypatch, what, make, uid, mode, body, acl,
                                                    other_holds):
    """Review items 4, 5 and 9: root fchmodded any root-owned file found in the lock dir 0666 (root's secret renamed
    in); a taken-over file kept its maker's ACL; and neither the O_EXCL on create nor the fchmod after the fchown
    was caught by a test."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    f = d / "cpu-0.lock"
    if make:
        make(f)
    with cpulock.hold([0], "root-run"):
        pass
    st = f.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (uid, mode), (oct(st.st_mode), st.st_uid)
    now = f.read_bytes()
    assert now == body if body is not None else json.loads(now)["run_id"] == "root-run", now
    assert (ACL in os.listxattr(f)) == acl
    got = as_uid(OTHER, held([0], "other-run"))
    assert (got == ["ok", "held"]) == other_holds, got


@ROOT_ONLY
def test_a_file_planted_between_the_look_and_the_create_is_never_chmodded(shared, monkeypatch):
    """Review item 9: the create's O_EXCL is what stops root from taking a file planted after it looked (missing) as
    one it made: root's 0600 file planted in that gap keeps its mode and its bytes, and the lock is taken on it."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    f = d / "cpu-0.lock"
    real, looks = cpulock._look, []

    def look_then_plant(dfd, name):
        looks.append(name)
        if len(looks) == 1:
            _made_by(0, 0o600, SECRET)(f)
            return None  # what the look saw: nothing yet
        return real(dfd, name)
    monkeypatch.setattr(cpulock, "_look", look_then_plant)
    with cpulock.hold([0], "root-run"):
        pass
    assert (f.stat().st_mode & 0o7777, f.read_bytes()) == (0o600, SECRET)
    assert len(looks) == 2  # the O_EXCL create failed and the file was looked at again


# ------------------------------------------------------------------------------------------------ the way to the dir
def _chain(*steps):
    """Dirs under the test dir, each (name, owner, mode) or (name, "->", target name): a symbolic link."""
    def make(top: Path) -> Path:
        p = top
        for name, owner, mode in steps:
            if owner == "->":  # a link at the top, to a dir made before
                p = top
                (p / name).symlink_to(top / mode)
            else:
                make_dir(p / name, owner, mode) if not (p / name).exists() else None
            p = p / name
        return p
    return make


WAYS = [
    # what, the dirs made, the lock dir named under them, run as, refused with (None: held)
    ("a parent another user owns (the reviewer's swap)", _chain(("par", NOBODY, 0o755)), "par/locks", 0,
     "parent", "belongs to uid 65534"),
    ("a parent root's, writable by all, not sticky", _chain(("par", 0, 0o777)), "par/locks", 0,
     "parent", "without the sticky bit"),
    ("a sticky parent another user owns", _chain(("par", NOBODY, 0o1777)), "par/locks", 0, "parent", "uid 65534"),
    ("a grandparent another user owns", _chain(("g", NOBODY, 0o755), ("p", 0, 0o755)), "g/p/locks", 0,
     "parent", "belongs to uid 65534"),
    ("a link in the middle (to root's private dir)", _chain(("priv", 0, 0o700), ("ln", "->", "priv")),
     "ln/locks", 0, "is a symbolic link (at", ""),
    ("a parent root's, sticky, writable by all (like /tmp)", _chain(("par", 0, 0o1777)), "par/locks", NOBODY, None,
     None),
    ("the user's own parent", _chain(("par", NOBODY, 0o755)), "par/locks", NOBODY, None, None),
    ("missing parents: made by walking, 0755", _chain(), "a/b/locks", 0, None, None),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,make,named,runner,refused,why", WAYS, ids=[c[0] for c in WAYS])
def test_the_lock_dir_is_reached_through_dirs_no_other_user_can_change(shared, monkeypatch, what, make, named, runner,
                                                                      refused, why):
    """Review items 2 and 3: an admin-named lock dir under another user's dir could be swapped for theirs (the
    same CPU held twice); a link in the middle of the name was followed (the dir made inside root's private dir)."""
    make(shared)
    monkeypatch.setenv(cpulock.ENV, str(shared / named))
    before = tree(shared)
    got = as_uid(runner, held([0]))
    if refused is None:
        assert got == ["ok", "held"], got
        st = (shared / named).lstat()
        assert (st.st_mode & 0o7777, st.st_uid) == (0o1777, runner)
        for p in Path(named).parents:
            if str(p) != "." and before.get(str(p)) is None:
                assert (shared / p).lstat().st_mode & 0o7777 == 0o755 & ~0o022  # made on the way
    else:
        assert got[:2] == ["err", "UserError"] and refused in got[2] and why in got[2], got
        assert "\n" not in got[2]
        assert tree(shared) == before  # nothing made, anywhere (not inside root's private dir)


# ------------------------------------------------------------------------------------------------ wording
@ROOT_ONLY
def test_a_file_unlinked_between_its_open_and_its_check_is_taken_again_not_called_linked_twice(shared, monkeypatch):
    """Review item 10: a lock file its maker unlinked right after root opened it was refused as 'not a plain file of
    its own (... 0 links)'; it locks nothing, so it is looked at again."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    assert as_uid(NOBODY, held([0], "maker")) == ["ok", "held"]
    real, opened = os.open, []

    def open_then_unlink(path, flags, *a, **kw):
        fd = real(path, flags, *a, **kw)
        if path == "cpu-0.lock" and not opened:
            opened.append(fd)
            os.unlink(d / "cpu-0.lock")
        return fd
    monkeypatch.setattr(cpulock.os, "open", open_then_unlink)
    with cpulock.hold([0], "root-run"):
        monkeypatch.setattr(cpulock.os, "open", real)
        assert json.loads((d / "cpu-0.lock").read_text())["run_id"] == "root-run"


@ROOT_ONLY
def test_a_refusal_says_what_is_true(shared, monkeypatch):
    """Review items 5 and 10: 'is Permission denied: refused' and 'nothing was written' (after earlier CPUs' files
    were made in the same run) were not true sentences."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    _made_by(OTHER, 0o600)(d / "cpu-3.lock")
    got = as_uid(NOBODY, held([1, 3]))
    assert got[:2] == ["err", "UserError"], got
    assert "cpu-3.lock cannot be opened (Permission denied): refused, it was not written to" in got[2], got
    assert "nothing was written" not in got[2] and "is Permission" not in got[2], got
    with pytest.raises(UserError):
        raise UserError(got[2])


@ROOT_ONLY
def test_a_default_dir_another_user_made_first_is_a_denial_with_a_remedy(shared, monkeypatch):
    """Review item 8: any user can make the shared default dir first. Every run is then refused in one line naming
    the remedy, and nothing is written in that user's dir."""
    d = make_dir(shared / "xeontl-locks", NOBODY, 0o1777)
    monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    before = tree(shared)
    got = as_uid(0, held([0]))
    assert got[:2] == ["err", "UserError"] and "\n" not in got[2], got
    for words in ("belongs to uid 65534", "a denial, never a write", f"mkdir -m 1777 {d}", f"set {cpulock.ENV}"):
        assert words in got[2], (words, got[2])
    assert tree(shared) == before
