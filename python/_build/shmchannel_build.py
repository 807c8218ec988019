"""The PEP 517 build backend of the shmchannel Python package, standard library only.

`python3 -m pip install ./python` calls it: it compiles the C core (native/core/*.cc) with the
system C++ compiler into libshmchannel.so, puts the library inside the package (where
shmchannel/_native.py looks first), and writes a wheel by hand (a zip with the package and its
.dist-info: METADATA, WHEEL, RECORD with sha256 hashes). Nothing is fetched: no setuptools, no
`wheel`, no network.

Where the core's sources are found, first match wins:
  1. $SHMCHANNEL_SOURCE: the repository, or its native/ directory;
  2. native/ inside the project (an sdist made by build_sdist carries it);
  3. ../native beside the project: python/ in the repository (pip >= 21.3 builds a local
     directory in place; an older pip copies python/ away alone, and then needs 1).
The compiler is $CXX, else c++; $CXXFLAGS replaces -O2 -g.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PROJECT = Path(__file__).resolve().parent.parent  # python/
PACKAGE = "shmchannel"
LIBRARY = "libshmchannel.so"
# The files of the package itself (no tests, no caches).
_PACKAGE_FILES = ("*.py", "py.typed")


# -- metadata ------------------------------------------------------------------------------


def _project_table() -> Dict[str, str]:
    """The string fields of pyproject.toml's [project] (tomllib is 3.11+; this needs 3.9)."""
    fields: Dict[str, str] = {}
    section = None
    for line in (PROJECT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        header = re.match(r"^\[([^\]]+)\]$", line)
        if header:
            section = header.group(1)
            continue
        if section != "project":
            continue
        plain = re.match(r'^([A-Za-z][\w-]*)\s*=\s*"([^"]*)"$', line)
        if plain:
            fields[plain.group(1)] = plain.group(2)
        text = re.match(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]*)"\s*\}$', line)
        if text:
            fields["license"] = text.group(1)
    for needed in ("name", "version"):
        if needed not in fields:
            raise RuntimeError(f"pyproject.toml: [project] has no {needed}")
    return fields


def _dist_name() -> Tuple[str, str]:
    fields = _project_table()
    return re.sub(r"[-_.]+", "_", fields["name"]).lower(), fields["version"]


def _metadata() -> str:
    fields = _project_table()
    lines = ["Metadata-Version: 2.1", f"Name: {fields['name']}", f"Version: {fields['version']}"]
    if "description" in fields:
        lines.append(f"Summary: {fields['description']}")
    if "requires-python" in fields:
        lines.append(f"Requires-Python: {fields['requires-python']}")
    if "license" in fields:
        lines.append(f"License: {fields['license']}")
    readme = PROJECT / "README.md"
    if readme.exists():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def _tag() -> str:
    """py3-none-<platform>: the package is pure Python, but it carries a native library."""
    platform = re.sub(r"[^\w]", "_", sysconfig.get_platform())
    return f"py3-none-{platform}"


def _wheel_file() -> str:
    return f"Wheel-Version: 1.0\nGenerator: shmchannel_build\nRoot-Is-Purelib: false\nTag: {_tag()}\n"


# -- the C core ----------------------------------------------------------------------------


def _native_dir() -> Path:
    """The directory holding core/*.cc and libshmchannel.map; RuntimeError saying where it looked."""
    tried: List[Path] = []
    explicit = os.environ.get("SHMCHANNEL_SOURCE")
    if explicit:
        tried += [Path(explicit) / "native", Path(explicit)]
    tried += [PROJECT / "native", PROJECT.parent / "native"]
    for place in tried:
        if (place / "core" / "shmchannel_message.h").is_file() and (place / "libshmchannel.map").is_file():
            return place.resolve()
    raise RuntimeError(
        "shmchannel: the C core's sources were not found (looked in "
        + ", ".join(str(p) for p in tried)
        + "); set SHMCHANNEL_SOURCE to the repository"
    )


def _compile(out: Path) -> Path:
    """Compiles the core into out/libshmchannel.so, a compiler per CPU; returns its path."""
    native = _native_dir()
    cxx = shlex.split(os.environ.get("CXX", "c++"))
    flags = shlex.split(os.environ.get("CXXFLAGS", "-O2 -g"))
    sources = sorted((native / "core").glob("*.cc"))
    objects: List[Path] = []
    running: List[Tuple[subprocess.Popen, Path]] = []
    jobs = max(1, os.cpu_count() or 1)

    def finish(proc: subprocess.Popen, source: Path) -> None:
        if proc.wait() != 0:
            raise RuntimeError(f"shmchannel: compiling {source} failed (exit {proc.returncode})")

    for source in sources:
        obj = out / (source.stem + ".o")
        objects.append(obj)
        command = cxx + ["-std=c++17", "-fPIC", "-Wall", "-Wextra"] + flags + ["-c", str(source), "-o", str(obj)]
        running.append((subprocess.Popen(command, stdout=sys.stderr), source))
        if len(running) >= jobs:
            finish(*running.pop(0))
    for proc, source in running:
        finish(proc, source)
    library = out / LIBRARY
    # Exports shmch_* only, as native/Makefile links it.
    link = cxx + ["-shared", f"-Wl,--version-script={native / 'libshmchannel.map'}"]
    link += ["-o", str(library)] + [str(o) for o in objects] + ["-lrt", "-lpthread"]
    if subprocess.call(link, stdout=sys.stderr) != 0:
        raise RuntimeError("shmchannel: linking libshmchannel.so failed")
    return library


# -- writing a wheel -----------------------------------------------------------------------


def _package_files() -> List[Path]:
    root = PROJECT / PACKAGE
    found: List[Path] = []
    for pattern in _PACKAGE_FILES:
        found += root.glob(pattern)
    return sorted(set(found))


class _WheelWriter:
    """A zip that records each file's hash for RECORD."""

    def __init__(self, path: Path, dist_info: str) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self._dist_info = dist_info
        self._records: List[str] = []

    def add(self, arcname: str, data: bytes, executable: bool = False) -> None:
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (0o755 if executable else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self._records.append(f"{arcname},sha256={digest},{len(data)}")

    def close(self) -> None:
        record = f"{self._dist_info}/RECORD"
        self._records.append(f"{record},,")
        info = zipfile.ZipInfo(record, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, "\n".join(self._records) + "\n")
        self._zip.close()


def _write_metadata(directory: Path) -> str:
    name, version = _dist_name()
    dist_info = f"{name}-{version}.dist-info"
    target = directory / dist_info
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(_metadata(), encoding="utf-8")
    (target / "WHEEL").write_text(_wheel_file(), encoding="utf-8")
    return dist_info


def _build(wheel_directory: str, editable: bool) -> str:
    name, version = _dist_name()
    dist_info = f"{name}-{version}.dist-info"
    filename = f"{name}-{version}-{_tag()}.whl"
    with tempfile.TemporaryDirectory(prefix="shmchannel-build-") as tmp:
        library = _compile(Path(tmp))
        writer = _WheelWriter(Path(wheel_directory) / filename, dist_info)
        try:
            if editable:
                # The package stays where it is; the library is put beside it, and a .pth file
                # adds python/ to sys.path.
                shutil.copyfile(library, PROJECT / PACKAGE / LIBRARY)
                writer.add(f"__editable__.{name}.pth", (str(PROJECT) + "\n").encode())
            else:
                for path in _package_files():
                    writer.add(f"{PACKAGE}/{path.name}", path.read_bytes())
                writer.add(f"{PACKAGE}/{LIBRARY}", library.read_bytes(), executable=True)
            writer.add(f"{dist_info}/METADATA", _metadata().encode("utf-8"))
            writer.add(f"{dist_info}/WHEEL", _wheel_file().encode("utf-8"))
        finally:
            writer.close()
    return filename


# -- the PEP 517 / PEP 660 hooks -----------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[dict] = None) -> str:
    return _write_metadata(Path(metadata_directory))


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: Optional[dict] = None) -> str:
    return _write_metadata(Path(metadata_directory))


def build_wheel(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    return _build(wheel_directory, editable=False)


def build_editable(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    return _build(wheel_directory, editable=True)


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    """A tar.gz of python/ with the core's sources in native/, so it builds anywhere alone."""
    name, version = _dist_name()
    base = f"{name}-{version}"
    native = _native_dir()
    filename = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / filename, "w:gz", format=tarfile.PAX_FORMAT) as tar:

        def add(path: Path, arcname: str) -> None:
            info = tar.gettarinfo(str(path), arcname=f"{base}/{arcname}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with path.open("rb") as f:
                tar.addfile(info, f)

        for rel in ("pyproject.toml", "README.md", "_build/shmchannel_build.py"):
            if (PROJECT / rel).exists():
                add(PROJECT / rel, rel)
        for path in _package_files():
            add(path, f"{PACKAGE}/{path.name}")
        for path in sorted((PROJECT / "tests").glob("*.py")):
            add(path, f"tests/{path.name}")
        add(native / "libshmchannel.map", "native/libshmchannel.map")
        for path in sorted((native / "core").iterdir()):
            if path.suffix in (".cc", ".h"):
                add(path, f"native/core/{path.name}")
        pkg_info = io.BytesIO(_metadata().encode("utf-8"))
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info.getvalue())
        tar.addfile(info, pkg_info)
    return filename
