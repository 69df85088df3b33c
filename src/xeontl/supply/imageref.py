"""Image references as Docker reads them (github.com/distribution/reference: regexp.go's grammar, normalize.go's
ParseNormalizedNamed): so that two spellings of one image are one image to every check that compares references
(a stack's own tag, an archive's tag), and a reference Docker would refuse is refused here, in one line, before
anything is built. `xeontl:paper`, `docker.io/library/xeontl:paper` and the same under the legacy index domain or
with a digest after it are the same tag; `XEONTL:PAPER` and `"xeontl:paper "` are no reference at all."""

from __future__ import annotations

import re
from typing import NamedTuple

from xeontl.common.errors import UserError

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w: ASCII only
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_ANCHORED_DOMAIN = re.compile(_DOMAIN)
_HEX64 = re.compile(r"[a-f0-9]{64}")
NAME_TOTAL_LENGTH_MAX = 255  # of the path (distribution/reference v0.6 Parse: len(repo.path))
# digest.Parse after the grammar (opencontainers/go-digest): a registered algorithm and its own encoded length
DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
DEFAULT_DOMAIN, OFFICIAL_REPO = "docker.io", "library"
LEGACY_DEFAULT_DOMAIN = f"index.{DEFAULT_DOMAIN}"


class Ref(NamedTuple):
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse(ref: str) -> Ref:
    """REF normalized as Docker does (ParseNormalizedNamed): the default domain and `library/` filled in, the
    legacy index domain renamed; no tag stays no tag (see tagged()). ValueError when Docker would refuse it."""
    if _HEX64.fullmatch(ref):
        raise ValueError(f"{ref!r}: a 64-hex string is an image id, not a repository name")
    # splitDockerDomain: the first component is a domain only if it looks like one (a dot, a port, localhost, or
    # upper case, which a path component cannot hold)
    first, slash, rest = ref.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, ref
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:  # a tag or digest holds no "/"
        remainder = f"{OFFICIAL_REPO}/{remainder}"
    m = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if not m or not _ANCHORED_DOMAIN.fullmatch(domain):
        raise ValueError(f"{ref!r} is not an image reference Docker accepts ([DOMAIN/]PATH[:TAG][@DIGEST], the "
                         f"path in lower case)")
    path = m["name"][len(domain) + 1:]
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError(f"{ref!r}: the repository path is longer than {NAME_TOTAL_LENGTH_MAX} characters")
    if m["digest"]:
        algorithm, _, hex_ = m["digest"].partition(":")
        if DIGEST_HEX.get(algorithm) != len(hex_) or hex_ != hex_.lower():
            raise ValueError(f"{ref!r}: the digest is not a {'/'.join(DIGEST_HEX)} one of its length in lower-case hex")
    return Ref(domain, path, m["tag"], m["digest"])


def tagged(ref: str) -> Ref:
    """parse(REF) with Docker's implicit tag: none given and no digest is `latest` (TagNameOnly)."""
    r = parse(ref)
    return r._replace(tag="latest") if r.tag is None and r.digest is None else r


def same_tag(a: str, b: str) -> bool:
    """A and B name the same repository and tag (False where either is no reference, or holds a digest: Docker and
    the container runtimes then run the digest's image, whatever tag is written before it)."""
    try:
        ra, rb = tagged(a), tagged(b)
    except ValueError:
        return False
    return not ra.digest and not rb.digest and (ra.domain, ra.path, ra.tag) == (rb.domain, rb.path, rb.tag)


def require(ref: str, what: str = "--image", then: str = "nothing was built or run") -> Ref:
    """One line (exit 2) for a reference Docker would refuse, before anything is built, run or tagged."""
    try:
        return parse(ref)
    except ValueError as e:
        raise UserError(f"{what} {e}; {then}") from None
