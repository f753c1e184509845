"""Keep secrets out of everything artq prints, logs or stores.

``mask_url`` hides the password of one URL, ``redact`` hides every URL credential and every
known secret value in free text, and :class:`RedactingFilter` / :func:`install_log_redaction`
apply ``redact`` to every log record of the process. Masking errs on the side of hiding too
much: a malformed URL (``mysql+mysqldb:/user:PW@host``) or a password with an unescaped ``@``
is masked as well, because that is exactly when error messages repeat the URL.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "***"

# scheme ":" any slashes, then user ":" password "@". The password is greedy up to the LAST "@"
# of the token, so "p@ss@host" masks "p@ss"; it never crosses whitespace or quotes.
_URL_CREDENTIALS = re.compile(
    r"""(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*:/*(?P<user>[^\s/:@'"<>()\[\]{},]*):)(?P<pw>[^\s'"<>]+)@"""
)
# secrets carried in a query string (?token=..., &password=...)
_QUERY_SECRETS = re.compile(
    r"""(?P<head>[?&;](?:[a-zA-Z0-9_\-]*?)(?:token|secret|password|passwd|pwd|api_?key|apikey|signature|sig|auth)=)"""
    r"""(?P<value>[^\s&#'"<>]+)""",
    re.IGNORECASE,
)
_MIN_SECRET_LEN = 4  # shorter values are too likely to match innocent text

_registry: set[str] = set()
_registry_lock = threading.Lock()


def mask_url(url: str) -> str:
    """``url`` with the password (and query-string secrets) replaced by ``***``.

    Works on malformed URLs too; a URL without a password comes back unchanged.
    """
    if not url:
        return url
    return _mask_credentials(str(url))


def _mask_credentials(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    return _QUERY_SECRETS.sub(lambda m: f"{m.group('head')}{MASK}", text)


def http_url_problem(url: str, where: str) -> str | None:
    """Why ``url`` is not a usable http(s) URL, in one line that never repeats it (it may hold a
    token), or None when it is fine. ``where`` names the setting in the message."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return f"`{where}` must be an http(s) URL with a numeric port; the one given is malformed."
    if parts.scheme not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"`{where}` must start with http:// or https://. Got {shown}."
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        return f"`{where}` must name a host and hold no spaces or control characters (http(s)://host/path)."
    return None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL's credentials masked and every given (or registered) secret replaced."""
    if not text:
        return text
    text = str(text)
    values = {s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}
    with _registry_lock:
        values |= _registry
    # longest first: a secret that contains another must be replaced whole
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return _mask_credentials(text)


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember secret values for this process; every later ``redact`` (and log record) hides them.

    URL values are registered by their password part (and whole), so a password shown without
    its URL is hidden too.
    """
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        value = str(value)
        password = url_password(value)
        if password:
            found.add(password)
            # an unescaped "@" splits the password: drivers then show its tail as a host name
            found.update(part for part in password.split("@") if len(part) >= _MIN_SECRET_LEN)
        elif "://" not in value:
            found.add(value)
    with _registry_lock:
        _registry.update(v for v in found if len(v) >= _MIN_SECRET_LEN)


def registered_secret_count() -> int:
    with _registry_lock:
        return len(_registry)


def url_password(url: str) -> str | None:
    """The raw password of ``url`` as written (up to its last ``@``), or None."""
    match = _URL_CREDENTIALS.search(url or "")
    return match.group("pw") if match else None


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its traceback text) with :func:`redact` before any handler sees it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not lose the record
        message = f"{record.msg!r} {record.args!r}"
    record.msg = redact(message)
    record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = RedactingFilter._formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_installed = False


def install_log_redaction(secrets: Iterable[str | None] = ()) -> None:
    """Redact every log record this process creates, whatever logger or handler it goes to.

    Installed as the log-record factory (so handlers configured later, e.g. by Celery, are
    covered) and idempotent. ``secrets`` are registered as with :func:`register_secrets`.
    """
    global _installed
    register_secrets(secrets)
    with _registry_lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
