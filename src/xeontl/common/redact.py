"""What never reaches a file, a log or an error line: secrets. Every record the bundle writes of its environment or of a
URL goes through here (provenance's env, the assets manifest, download errors).

- Environment names that usually hold a secret: their values are recorded as REDACTED (the name stays, so a reader
  knows it was set). The usual names: *PASS* (PASSWD, PASSWORD, db_pass), *TOKEN*, *SECRET*, *KEY* (API_KEY,
  AWS_SECRET_ACCESS_KEY), *CREDENTIAL*, *AUTH*, *COOKIE*, *SESSION*, *PRIVATE*.
- A URL (`url`), parsed with urllib.parse, never matched by a pattern:
  * its user info, `scheme://USER:PASSWORD@host`, is replaced whole. The user info ends at the *last* `@` of the URL:
    a password holding `@`, `/`, `?` or `#` (which RFC 3986 wants escaped, and users type anyway) is hidden in full.
    The price: a URL with an `@` in its path or query shows `scheme://<redacted>@` up to that `@`. Too much hidden,
    never too little.
  * every query value is replaced, whatever its name (`?token=`, `X-Amz-Signature=`, `sig=`, a presigned URL's
    `Credential=`, names nobody listed): a record keeps which parameters a URL had, never their values; a parameter
    without `=` is replaced whole. The fragment too (`#access_token=...`).
  * a URL that does not parse (`[` without `]`) is replaced whole.
- `text`: every `scheme://...` in free text (an error message, an environment value), up to the next white space or
  quote, treated as a URL.
"""

from __future__ import annotations

import re
import string
import urllib.parse

REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)
SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+.-")
URL_END = frozenset(string.whitespace + "'\"<>`")  # where a URL inside free text stops


def url(value: str) -> str:
    """VALUE, a URL, with its user info, query values and fragment replaced (see the module's doc)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    userinfo, at, hostpart = rest.rpartition("@")
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{hostpart}")
    except ValueError:  # an authority urllib cannot read (an unclosed IPv6 bracket): nothing of it shown
        return f"{scheme}://{REDACTED}"
    query = "&".join(f"{name}={REDACTED}" if eq else REDACTED
                     for name, eq, _ in (p.partition("=") for p in parts.query.split("&") if p))
    # rebuilt by hand: urlunsplit would drop a "?" or "#" with nothing after it, and keeps the path as given
    out = f"{scheme}://{REDACTED + '@' if at else ''}{parts.netloc}{parts.path}"
    if "?" in hostpart.partition("#")[0]:
        out += f"?{query}"
    if "#" in hostpart:
        out += f"#{REDACTED}" if parts.fragment else "#"
    return out


def text(value: str) -> str:
    """VALUE with every URL in it redacted (`url`)."""
    out, i = [], 0
    while (mark := value.find("://", i)) >= 0:
        start = mark
        while start > i and value[start - 1] in SCHEME_CHARS:
            start -= 1
        end = mark + 3
        while end < len(value) and value[end] not in URL_END:
            end += 1
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
