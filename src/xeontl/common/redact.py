"""What never reaches a file, a log or an error line: secrets. Every record the bundle writes of its environment or of a
URL goes through here (provenance's env, the assets manifest, download errors).

- Environment names that usually hold a secret: their values are recorded as REDACTED (the name stays, so a reader
  knows it was set). The usual names: *PASS* (PASSWD, PASSWORD, db_pass), *TOKEN*, *SECRET*, *KEY* (API_KEY,
  AWS_SECRET_ACCESS_KEY), *CREDENTIAL*, *AUTH*, *COOKIE*, *SESSION*, *PRIVATE*.
- Credentials inside a URL (`scheme://user:password@host/...`): the user info is replaced wherever a URL appears in a
  value, whatever the variable's name.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)
# scheme://userinfo@ : userinfo up to the first @ of the authority (no /, no whitespace before it)
URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")


def text(value: str) -> str:
    """VALUE with the credentials of every URL in it replaced."""
    return URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", value)


def secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def value(name: str, val: str) -> str:
    """The value recorded for environment variable NAME."""
    return REDACTED if secret_name(name) else text(val)
