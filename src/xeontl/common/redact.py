"""What never reaches a file, a log or an error line: secrets. Every record the bundle writes of its environment or of a
URL goes through here (provenance's env, the assets manifest, download errors).

- Environment names that usually hold a secret: their values are recorded as REDACTED (the name stays, so a reader
  knows it was set). The usual names: *PASS* (PASSWD, PASSWORD, db_pass), *TOKEN*, *SECRET*, *KEY* (API_KEY,
  AWS_SECRET_ACCESS_KEY), *CREDENTIAL*, *AUTH*, *COOKIE*, *SESSION*, *PRIVATE*.
- A URL (`url`), parsed with urllib.parse, never matched by a pattern:
  * its user info, `scheme://USER:PASSWORD@host`, is replaced whole. The user info ends at the *last* `@` followed by
    a host: a password holding `@`, `/`, `?` or `#` (which RFC 3986 wants escaped, and users type anyway) is hidden
    in full. The price: a URL with `@host` in its path or query shows `scheme://<redacted>@` up to that `@`, and
    when a `?` or `#` came before it, nothing after the host. Too much hidden, never too little.
  * every query value is replaced, whatever its name (`?token=`, `X-Amz-Signature=`, `sig=`, a presigned URL's
    `Credential=`, names nobody listed): a record keeps which parameters a URL had, never their values; a parameter
    without `=` is replaced whole. The fragment too (`#access_token=...`).
  * a URL that does not parse (`[` without `]`) is replaced whole.
- `text`: every `scheme://...` in free text (an error message, an environment value), up to the next white space or
  quote, treated as a URL; unless it is a bare authority with an `@` later in the text (before another URL): then a
  password held that space or quote, and everything up to that `@` is the user info.
- a path segment's parameters (`/x;jsessionid=...`) are replaced like query values, their names kept.
"""

from __future__ import annotations

import re
import string
import urllib.parse

REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)
SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+.-")
URL_END = frozenset(string.whitespace + "'\"<>`")  # where a URL inside free text stops
HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._~%:[]")  # a host[:port] as a user info's end


def _userinfo_end(rest: str) -> int | None:
    """Where the user info of REST (a URL after its `scheme://`) ends: the last `@` followed by an authority that is a
    host (letters, digits, `-._~%:[]` up to the next `/`, `?` or `#`); else the last `@` of urllib's own netloc; else
    None (an `@` of the path or query, e.g. `?email=a@b&token=...`, never makes the rest a host)."""
    for at in range(len(rest) - 1, -1, -1):
        if rest[at] == "@":
            after = rest[at + 1:]
            authority = after[:min([after.find(c) for c in "/?#" if c in after] or [len(after)])]
            if authority and set(authority) <= HOST_CHARS:
                return at
    netloc = rest[:min([rest.find(c) for c in "/?#" if c in rest] or [len(rest)])]
    return netloc.rindex("@") if "@" in netloc else None


def url(value: str) -> str:
    """VALUE, a URL, with its user info, query values and fragment replaced (see the module's doc)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    at = _userinfo_end(rest)
    hostpart = rest if at is None else rest[at + 1:]
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{hostpart}")
    except ValueError:  # an authority urllib cannot read (an unclosed IPv6 bracket): nothing of it shown
        return f"{scheme}://{REDACTED}"
    userinfo = "" if at is None else f"{REDACTED}@"
    if at is not None and ("?" in rest[:at] or "#" in rest[:at]):
        # a `?` or `#` before the user info's end: a password holding one, or a query or fragment that held the `@`;
        # which, nobody can tell, so nothing after the host is shown (a query's tail would read as a path)
        return f"{scheme}://{userinfo}{parts.netloc}" + (f"/{REDACTED}" if hostpart[len(parts.netloc):] else "")
    query = "&".join(f"{name}={REDACTED}" if eq else REDACTED
                     for name, eq, _ in (p.partition("=") for p in parts.query.split("&") if p))
    # rebuilt by hand: urlunsplit would drop a "?" or "#" with nothing after it, and keeps the path as given; a path
    # segment's parameters (`;jsessionid=...`) are values like a query's
    out = f"{scheme}://{userinfo}{parts.netloc}{_path(parts.path)}"
    if "?" in hostpart.partition("#")[0]:
        out += f"?{query}"
    if "#" in hostpart:
        out += f"#{REDACTED}" if parts.fragment else "#"
    return out


def _path(path: str) -> str:
    """PATH with each segment's parameters (RFC 3986's `;name=value`) kept by name, their values replaced."""
    if ";" not in path:
        return path
    return "/".join(seg.split(";")[0] + "".join(f";{n}={REDACTED}" if eq else f";{REDACTED}"
                                                for n, eq, _ in (p.partition("=") for p in seg.split(";")[1:]))
                    for seg in path.split("/"))


def _url_end(value: str, start: int, stop: int) -> int:
    """Where the URL whose `://` ends at START stops in free text: the next white space or quote, unless what came
    before it is a bare authority without user info and an `@` follows before STOP (the next URL): then a password
    held that character (`http://u:pa ss@host`), and the URL runs on past that `@`."""
    end = start
    while end < len(value) and value[end] not in URL_END:
        end += 1
    if end < stop and not set(value[start:end]) & set("/?#@"):
        at = value.find("@", end, stop)
        if at >= 0:
            end = at
            while end < len(value) and value[end] not in URL_END:
                end += 1
    return end


def text(value: str) -> str:
    """VALUE with every URL in it redacted (`url`)."""
    out, i = [], 0
    while (mark := value.find("://", i)) >= 0:
        start = mark
        while start > i and value[start - 1] in SCHEME_CHARS:
            start -= 1
        following = value.find("://", mark + 3)
        end = _url_end(value, mark + 3, len(value) if following < 0 else following)
        if start == mark:  # "://" with no scheme before it: not a URL, but what follows is shown as one would be
            out.append(value[i:mark] + url("x" + value[mark:end])[1:])
        else:
            out.append(value[i:start] + url(value[start:end]))
        i = end
    return "".join(out) + value[i:]


def secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def value(name: str, val: str) -> str:
    """The value recorded for environment variable NAME."""
    return REDACTED if secret_name(name) else text(val)
