"""One fetch: every HTTP request the bundle makes for a file (assets.fetch_file: the Kather archive, any URL a user
gives) goes through `open_url`, urllib with a redirect handler of its own:

- only http and https, in the URL and in every redirect (urllib's own handler would follow one to ftp:);
- a redirect from https to plain http is refused (one line): what TLS protected is not sent in clear;
- credentials go to one origin (scheme, host, port) only: a URL's `user:password@` becomes a Basic Authorization
  header (urllib sends none from a URL, and fails on one with a password with the password in its message), and that
  header, a caller's Authorization, Proxy-Authorization and Cookie headers are dropped on a redirect to another
  origin (urllib keeps every `Request(headers=)` header across redirects: the second server got the password);
- a redirect naming credentials of its own is refused (a server cannot make the client log in elsewhere);
- every URL in an error line is redacted (xeontl.common.redact.url: user info, query values, fragment), and nothing
  of a URL that does not parse is echoed (urllib's "nonnumeric port: 'pa'" was half a password).

urllib's HTTPError and URLError reach the caller as they are; the caller words them (assets.fetch_file).
"""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request

from xeontl.common import redact
from xeontl.common.errors import UserError

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")  # never sent to another origin


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of URL, the port made explicit: what "the same server" means for credentials. Raises
    ValueError for a URL whose port does not parse."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme, 0)


def split_credentials(url: str) -> tuple[str, str | None]:
    """(URL without its user info, the Basic Authorization header the user info stood for, or None). The user info
    ends at the authority's last `@` (urllib.parse's own reading)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def check(url: str) -> None:
    """URL is one open_url fetches: http or https, a host, a port that parses; one line otherwise (the URL redacted,
    nothing of urllib's message, which quotes the bad part)."""
    try:
        scheme, host, _ = origin(url)
    except ValueError:
        raise UserError(f"{redact.url(url)} is not a URL this can fetch (its host or port does not parse)") from None
    if scheme not in SCHEMES or not host:
        raise UserError(f"{redact.url(url)} is not a URL this can fetch (http:// or https:// and a host)")


class Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling (codes, loop limit) with the rules of this module's doc."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old = req.full_url
        shown = f"{redact.url(old)} redirects to {redact.url(newurl)}"
        try:
            check(newurl)
        except UserError:
            raise UserError(f"download refused: {shown}, not an http(s) URL with a host") from None
        if origin(old)[0] == "https" and origin(newurl)[0] == "http":
            raise UserError(f"download refused: {shown}, from https to plain http (a downgrade)")
        if "@" in urllib.parse.urlsplit(newurl).netloc:
            raise UserError(f"download refused: {shown}, a redirect carrying credentials of its own")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(old) != origin(newurl):
            for name in [k for k in new.headers if k.lower() in CREDENTIAL_HEADERS]:
                del new.headers[name]
            for name in [k for k in new.unredirected_hdrs if k.lower() in CREDENTIAL_HEADERS]:
                del new.unredirected_hdrs[name]
        return new


def open_url(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0):
    """The response to GET URL (urllib's), HEADERS sent, the URL's own credentials as Basic auth, redirects followed
    under this module's rules. Raises UserError for a URL or a redirect refused, urllib's errors otherwise."""
    check(url)
    plain, auth = split_credentials(url)
    sent = {**(headers or {}), **({"Authorization": auth} if auth else {})}
    opener = urllib.request.build_opener(Redirects)
    return opener.open(urllib.request.Request(plain, headers=sent), timeout=timeout)
