"""The one redaction step: every text drdrill writes anywhere goes through `redact` — report
files (`write_report_file`), diagnostics, phase errors (at the recorder), the console (progress
lines, the summary, error messages) and log records (`redacting_logs`, installed by the engine).

Reports end up in CI artifacts and PR comments; a kubeconfig or an age key must never get there.
The patterns keep the key name and replace only the value, so a reader still sees *what* was there.
Forms handled: PEM blocks (TLS and SSH private keys, certificates, age/PGP-armoured SOPS data
keys), kubeconfig credentials, `token:`/`password:` fields, `K3S_TOKEN=`/`TOKEN=`-style
assignments, bearer and basic credentials, age identities, SOPS `enc:` data keys and `ENC[...]`
values, and credentials in URLs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ReportError

REDACTED = "[REDACTED]"

# Characters a token or base64 value is made of. Deliberately narrow: it must stop at quotes,
# `<`, `&` and whitespace so that redacting serialized JSON or XML cannot eat its syntax.
_VALUE_CHARS = r"[A-Za-z0-9._~+/=-]+"

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----.*?-----END (?P=label)-----", re.DOTALL)
# A truncated block (a log tail cut in the middle of a key): drop the header and the base64 after.
_PEM_OPEN = re.compile(r"-----BEGIN [A-Z0-9 ]*(?:PRIVATE KEY|CERTIFICATE)-----[A-Za-z0-9+/=\s]*")
_KUBECONFIG_DATA = re.compile(
    r"""(?P<key>\b(?:client-key-data|client-certificate-data)["']?\s*[:=]\s*["']?)"""
    + _VALUE_CHARS)
# k3s tokens are `K10<hash>::server:<secret>`: a field or assignment value may hold colons.
_SECRET_VALUE = r"[A-Za-z0-9._~+/=:-]+"  # noqa: S105 - a pattern, not a password
_TOKEN_FIELD = re.compile(
    r"""(?P<key>\b(?:[\w-]*token|password|passphrase)["']?\s*:\s*["']?)""" + _SECRET_VALUE,
    re.IGNORECASE)
# Shell and environment assignments: K3S_TOKEN=..., TOKEN=..., DB_PASSWORD=..., SOPS_AGE_KEY=...
_ASSIGNMENT = re.compile(
    r"""(?P<key>\b[\w-]*(?:token|passw(?:or)?d|passphrase|secret|_key)\s*=\s*["']?)"""
    + _SECRET_VALUE, re.IGNORECASE)
# SOPS metadata: the data key, encrypted per recipient (`enc: ...`), and encrypted values.
_SOPS_ENC = re.compile(r"""(?P<key>(?:^|[\s{,])["']?enc["']?\s*:\s*[|>]?-?\s*["']?)"""
                       + _VALUE_CHARS, re.MULTILINE)
_SOPS_VALUE = re.compile(r"ENC\[[A-Z0-9_]+,[^\]\s]*\]")
_BEARER = re.compile(r"(?P<key>\bbearer\s+)" + _VALUE_CHARS, re.IGNORECASE)
_BASIC = re.compile(r"(?P<key>\bauthorization\s*:\s*basic\s+)" + _VALUE_CHARS, re.IGNORECASE)
_AGE_KEY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Za-z]+")
# Forge tokens by their documented prefixes (GitHub classic and fine-grained, GitLab personal):
# a bare token in a message, a URL path or a values file has no key name to give it away.
_FORGE_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}"
                          r"|glpat-[A-Za-z0-9_-]{20,})")
_URL_USERINFO = re.compile(
    r"""(?P<key>\b[a-z][a-z0-9+.-]*://)[^/\s:@"'<>]+:[^/\s@"'<>]+@""", re.IGNORECASE)

_SENSITIVE_KEY = re.compile(
    r"^(?:[\w-]*token|password|passphrase|client-key-data|client-certificate-data|"
    r"private[-_]?key|age[-_]?key|enc|data[-_]?key)$", re.IGNORECASE)

_KUBECONFIG_DOC = re.compile(r"^kind:\s*[\"']?Config[\"']?\s*$", re.MULTILINE)
_SECRET_FILE_NAME = re.compile(
    r"(?:kubeconfig|\.kube[/\\]config|\.key$|\.pem$|\.agekey$|age[-_.]?key|id_(?:rsa|ed25519|ecdsa))",
    re.IGNORECASE)


def redact(text: str) -> str:
    """Replace private keys, certificates, kubeconfig credentials, tokens and age keys."""
    text = _PEM_BLOCK.sub(REDACTED, text)
    text = _PEM_OPEN.sub(REDACTED, text)
    text = _AGE_KEY.sub(REDACTED, text)
    text = _FORGE_TOKEN.sub(REDACTED, text)
    text = _SOPS_VALUE.sub(REDACTED, text)
    text = _URL_USERINFO.sub(rf"\g<key>{REDACTED}@", text)
    for pattern in (_KUBECONFIG_DATA, _TOKEN_FIELD, _ASSIGNMENT, _SOPS_ENC, _BEARER, _BASIC):
        text = pattern.sub(rf"\g<key>{REDACTED}", text)
    return text


@contextlib.contextmanager
def redacting_logs() -> Iterator[None]:
    """While the block runs, every log record is redacted when it is made, whatever handler
    (console, pytest's capture, a file) later writes it."""
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        with contextlib.suppress(Exception):  # a broken %-format stays the handler's business
            record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_control(text: str) -> str:
    """Drop terminal colour codes and other control characters (they come with log tails)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def redact_data(data: Any) -> Any:
    """`redact` every string inside JSON-like data; values under secret-named keys go entirely."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {k: (REDACTED if isinstance(k, str) and _SENSITIVE_KEY.match(k) and v
                    else redact_data(v)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    return data


def looks_like_secret_file(name: str, text: str | None = None) -> bool:
    """True for something that must not be attached at all: a kubeconfig or a key file.

    Redaction would leave a kubeconfig's servers and user names; a report has no use for them.
    """
    if _SECRET_FILE_NAME.search(name):
        return True
    return text is not None and bool(_KUBECONFIG_DOC.search(text)) and "users:" in text


def write_report_file(path: Path, data: str | bytes, *, scrub: bool = True) -> Path:
    """Write `data` to `path` atomically (temp file + rename); text is `redact`ed unless told.

    A reader never sees half a file, and an old file stays intact when the disk is full.
    Raises ReportError naming the file and what to do about it.
    """
    payload = (redact(data) if scrub else data).encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise report_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)  # mkstemp makes 0600; reports are meant to be read by CI and people
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise report_error(path, exc) from exc
    return path


def report_error(path: Path, exc: OSError, *, folder: bool = False) -> ReportError:
    """A ReportError for the file (or `folder`) `path` whose fix matches the cause."""
    where = path if folder else path.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = (f"free space on the file system holding {where}, or write the report elsewhere "
               "with --report-dir")
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {where} writable, or write the report elsewhere with --report-dir"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()),
                       where)
        fix = (f"{blocker} is a file where a folder must be; remove it or pass another folder "
               "to --report-dir")
    else:
        fix = "check the report folder, or write the report elsewhere with --report-dir"
    reason = exc.strerror or str(exc)
    what = "create report folder" if folder else "write report file"
    return ReportError(f"cannot {what} {path}: {reason}", fix=fix)
