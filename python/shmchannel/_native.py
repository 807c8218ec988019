"""ctypes declarations of native/core/shmchannel_message.h, and where libshmchannel.so is found.

Nothing else in the package touches the library directly. Every validation of the shared
segment stays in the C core; this module only declares its types and finds the file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import List, Optional

# enum shmch_kind (shmchannel.h)
HELLO, BYE, NOTIFY, REQUEST, RESPONSE, COMPLETE, ERROR, CANCEL = range(1, 9)

# enum shmch_status, in the header's order
STATUS_NAMES = (
    "SHMCH_OK",
    "SHMCH_E_INVALID_NAME",
    "SHMCH_E_INVALID_SIZE",
    "SHMCH_E_INVALID_ARG",
    "SHMCH_E_EXISTS",
    "SHMCH_E_NOT_FOUND",
    "SHMCH_E_NOT_READY",
    "SHMCH_E_BUSY",
    "SHMCH_E_ACCESS",
    "SHMCH_E_RESOURCE",
    "SHMCH_E_OS",
    "SHMCH_E_INCOMPATIBLE",
    "SHMCH_E_PROTOCOL",
    "SHMCH_E_FULL",
    "SHMCH_E_CLOSED",
    "SHMCH_E_TRUNCATED",
)
(
    OK,
    E_INVALID_NAME,
    E_INVALID_SIZE,
    E_INVALID_ARG,
    E_EXISTS,
    E_NOT_FOUND,
    E_NOT_READY,
    E_BUSY,
    E_ACCESS,
    E_RESOURCE,
    E_OS,
    E_INCOMPATIBLE,
    E_PROTOCOL,
    E_FULL,
    E_CLOSED,
    E_TRUNCATED,
) = range(len(STATUS_NAMES))

SERVER, CLIENT = 0, 1

EV_READABLE, EV_WRITABLE, EV_PEER_LEFT, EV_WOKEN, EV_TIMEOUT, EV_DRAINED = 1, 2, 4, 8, 16, 32


class Error(ctypes.Structure):
    """struct shmch_error."""

    _fields_ = [
        ("sys_errno", ctypes.c_int),
        ("syscall", ctypes.c_char_p),
        ("owner_pid", ctypes.c_uint32),
        ("detail", ctypes.c_char_p),
    ]


class EndpointOptions(ctypes.Structure):
    """struct shmch_endpoint_options."""

    _fields_ = [
        ("ring_capacity", ctypes.c_uint32),
        ("max_message_size", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("queue_limit", ctypes.c_uint32),
        ("connect_timeout_ms", ctypes.c_int),
        ("abort_flag", ctypes.POINTER(ctypes.c_int)),
    ]


class Message(ctypes.Structure):
    """struct shmch_message (data is valid until the next receive: copy it at once)."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("id", ctypes.c_uint32),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("error_message", ctypes.c_char_p),
        ("error_code", ctypes.c_char_p),
    ]


class Info(ctypes.Structure):
    """struct shmch_info."""

    _fields_ = [
        ("ring_capacity", ctypes.c_uint32),
        ("max_message_size", ctypes.c_uint32),
        ("max_frame_payload", ctypes.c_uint32),
        ("peer_pid", ctypes.c_uint32),
        ("client_epoch", ctypes.c_uint32),
        ("state", ctypes.c_uint32),
        ("pool_capacity", ctypes.c_uint32),
    ]


def _candidates() -> List[str]:
    """Where the library is looked for, in order."""
    found: List[str] = []
    explicit = os.environ.get("SHMCHANNEL_LIB")
    if explicit:
        found.append(explicit)
    here = Path(__file__).resolve().parent
    found.append(str(here / "libshmchannel.so"))
    # python/shmchannel/_native.py -> the repository's build/c (npm run build:c)
    found.append(str(here.parent.parent / "build" / "c" / "libshmchannel.so"))
    system = ctypes.util.find_library("shmchannel")
    if system:
        found.append(system)
    return found


def _declare(lib: ctypes.CDLL) -> None:
    vp, u32, i32, sz = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_size_t
    data = ctypes.c_char_p
    table = {
        "shmch_status_string": (ctypes.c_char_p, [i32]),
        "shmch_status_description": (ctypes.c_char_p, [i32]),
        "shmch_endpoint_open": (
            i32,
            [ctypes.c_char_p, i32, ctypes.POINTER(EndpointOptions), ctypes.POINTER(vp), ctypes.POINTER(Error)],
        ),
        "shmch_endpoint_close": (i32, [vp, i32]),
        "shmch_endpoint_notify": (i32, [vp, data, sz]),
        "shmch_endpoint_request": (i32, [vp, data, sz, ctypes.POINTER(u32)]),
        "shmch_endpoint_cancel": (i32, [vp, u32]),
        "shmch_endpoint_respond": (i32, [vp, u32, data, sz]),
        "shmch_endpoint_complete": (i32, [vp, u32]),
        "shmch_endpoint_reply": (i32, [vp, u32, data, sz]),
        "shmch_endpoint_fail": (i32, [vp, u32, ctypes.c_char_p, ctypes.c_char_p]),
        "shmch_endpoint_receive": (i32, [vp, ctypes.POINTER(Message)]),
        "shmch_endpoint_wait": (i32, [vp, i32]),
    "shmch_endpoint_wait_for": (i32, [vp, i32, i32]),
        "shmch_endpoint_wake": (None, [vp]),
        "shmch_endpoint_flush": (i32, [vp, i32]),
        "shmch_endpoint_queued": (sz, [vp]),
        "shmch_endpoint_connected": (i32, [vp]),
        "shmch_endpoint_channel": (vp, [vp]),
        "shmch_get_info": (None, [vp, ctypes.POINTER(Info)]),
        "shmch_guard_truncation": (i32, []),
    }
    for name, (restype, argtypes) in table.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lib: Optional[ctypes.CDLL] = None


def load() -> ctypes.CDLL:
    """The core library, loaded once; OSError saying every place tried if it is nowhere."""
    global _lib
    if _lib is not None:
        return _lib
    tried: List[str] = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (missing)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as err:
            tried.append(f"{path} ({err})")
            continue
        _declare(lib)
        # As the Node package does on load: a peer that shrinks a segment then fails that
        # channel (SHMCH_E_TRUNCATED) instead of killing the interpreter with SIGBUS.
        lib.shmch_guard_truncation()
        _lib = lib
        return lib
    raise OSError(
        "libshmchannel.so not found: build it with `npm run build:c` (build/c/) or set SHMCHANNEL_LIB; tried "
        + "; ".join(tried)
    )


def status_name(status: int) -> str:
    """The enumerator's name, as shmch_status_string() gives it."""
    return STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else "SHMCH_E_UNKNOWN"
