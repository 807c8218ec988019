"""ShmChannelError, with the codes of the Node package (docs/API.md, "Errors")."""

from __future__ import annotations

import errno as _errno
from typing import Optional

from . import _native


class ShmChannelError(Exception):
    """Every error of the package.

    ``code`` is the Node package's code (``'ERR_PEER_LOST'``, ``'ERR_REMOTE'``, ``'ERR_TIMEOUT'``,
    ``'ERR_CHANNEL_CLOSED'``, ...). ``remote_code`` is set for ``ERR_REMOTE``: the code the
    peer's handler failed with (None if it gave none). ``errno`` and ``syscall`` are set for
    system errors (``errno`` as a name, e.g. ``'ENOENT'``); ``owner_pid`` for
    ``ERR_ALREADY_OPEN`` and ``ERR_CHANNEL_BUSY``; ``status`` is the core's status name when the
    error comes from it.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        remote_code: Optional[str] = None,
        errno: Optional[str] = None,
        syscall: Optional[str] = None,
        owner_pid: Optional[int] = None,
        status: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.remote_code = remote_code
        self.errno = errno
        self.syscall = syscall
        self.owner_pid = owner_pid
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


# What a core status means when a send or a receive fails.
_SEND_CODES = {
    _native.E_INVALID_NAME: "ERR_INVALID_NAME",
    _native.E_INVALID_SIZE: "ERR_MESSAGE_TOO_LARGE",
    _native.E_INVALID_ARG: "ERR_INVALID_ARG_VALUE",
    _native.E_FULL: "ERR_QUEUE_FULL",
    _native.E_CLOSED: "ERR_CHANNEL_CLOSED",
    _native.E_PROTOCOL: "ERR_PROTOCOL",
    _native.E_TRUNCATED: "ERR_PROTOCOL",
}

# What a status means when opening (shmch_endpoint_open).
_OPEN_CODES = {
    _native.E_INVALID_NAME: "ERR_INVALID_NAME",
    _native.E_INVALID_SIZE: "ERR_INVALID_SIZE",
    _native.E_INVALID_ARG: "ERR_INVALID_ARG_VALUE",
    _native.E_EXISTS: "ERR_ALREADY_OPEN",
    _native.E_BUSY: "ERR_CHANNEL_BUSY",
    _native.E_ACCESS: "ERR_SHM_OPEN_FAILED",
    _native.E_RESOURCE: "ERR_RESOURCE_LIMIT",
    _native.E_OS: "ERR_SHM_OPEN_FAILED",
    _native.E_INCOMPATIBLE: "ERR_INCOMPATIBLE_SEGMENT",
    _native.E_PROTOCOL: "ERR_PROTOCOL",
    _native.E_TRUNCATED: "ERR_PROTOCOL",
}


def _describe(status: int) -> str:
    lib = _native.load()
    text = lib.shmch_status_description(status)
    return text.decode("utf-8", "replace") if text else _native.status_name(status)


def status_error(status: int, what: str) -> ShmChannelError:
    """The error of a failed send, receive or close."""
    code = _SEND_CODES.get(status, "ERR_PROTOCOL")
    return ShmChannelError(code, f"{what}: {_describe(status)}", status=_native.status_name(status))


def open_error(status: int, err: "_native.Error", waited: bool) -> ShmChannelError:
    """The error of a failed shmch_endpoint_open (``waited``: a client that waited for its server)."""
    if status in (_native.E_NOT_FOUND, _native.E_NOT_READY):
        if waited:
            return ShmChannelError(
                "ERR_TIMEOUT",
                "no server appeared within connect_timeout",
                status=_native.status_name(status),
            )
        code = "ERR_SHM_OPEN_FAILED"
    else:
        code = _OPEN_CODES.get(status, "ERR_SHM_OPEN_FAILED")
    message = _describe(status)
    if err.detail:
        message += ": " + err.detail.decode("utf-8", "replace")
    errno_name = None
    if err.sys_errno:
        errno_name = _errno.errorcode.get(err.sys_errno, str(err.sys_errno))
    elif status == _native.E_NOT_FOUND:
        errno_name = "ENOENT"
    elif status == _native.E_ACCESS:
        errno_name = "EACCES"
    return ShmChannelError(
        code,
        message,
        errno=errno_name,
        syscall=err.syscall.decode() if err.syscall else None,
        owner_pid=err.owner_pid or None,
        status=_native.status_name(status),
    )


def closed_error(message: str = "the channel is closed") -> ShmChannelError:
    return ShmChannelError("ERR_CHANNEL_CLOSED", message)


def peer_lost_error(message: str = "the peer left while the request was pending") -> ShmChannelError:
    return ShmChannelError("ERR_PEER_LOST", message)


def remote_error(message: str, code: Optional[str]) -> ShmChannelError:
    """An ERROR frame of the peer: ERR_NO_HANDLER as itself, anything else ERR_REMOTE."""
    if code == "ERR_NO_HANDLER":
        return ShmChannelError("ERR_NO_HANDLER", message, remote_code=code)
    return ShmChannelError("ERR_REMOTE", message, remote_code=code)
