"""Reproducible zip archives: sorted entries, one fixed timestamp, Unix modes (exec bits) kept.

The same folder gives the same bytes on every run and every machine, so a content hash of the zip
decides whether a new Lambda layer version is needed.

Example:
    >>> import tempfile, pathlib, zipfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "b.txt").write_text("b"); (root / "a.sh").write_text("#!/bin/sh\\n")
    1
    10
    >>> (root / "a.sh").chmod(0o755)
    >>> first = write_zip(root, root.parent / "one.zip"); second = write_zip(root, root.parent / "two.zip")
    >>> first.read_bytes() == second.read_bytes()
    True
    >>> [(i.filename, oct(i.external_attr >> 16)) for i in zipfile.ZipFile(first).infolist()]
    [('a.sh', '0o100755'), ('b.txt', '0o100644')]
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path
from typing import Iterable

# 1980-01-01 is the earliest date a zip entry can carry; any fixed value makes the archive reproducible.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def _mode(path: Path) -> int:
    # Only the exec bit is meaningful to Lambda; normalising the rest keeps umask differences out of the bytes.
    executable = os.stat(path).st_mode & stat.S_IXUSR
    return stat.S_IFREG | (0o755 if executable else 0o644)


def iter_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (symlinks followed), sorted by their POSIX relative path."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def write_zip(root: Path, target: Path, files: Iterable[Path] | None = None, level: int = 9) -> Path:
    """Zip ``files`` (default: all files under ``root``) with paths relative to ``root``; returns ``target``.

    Entries are sorted, dated ``FIXED_DATE_TIME`` and carry mode 0644 or 0755, so the output is byte-identical
    for identical inputs. The zip is written beside ``target`` and renamed, so a failed build never leaves a
    half-written archive in its place.
    """
    root = Path(root)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    chosen = iter_files(root) if files is None else sorted(files, key=lambda p: Path(p).relative_to(root).as_posix())
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for path in chosen:
            info = zipfile.ZipInfo(Path(path).relative_to(root).as_posix(), date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr is read as a mode by unzip and by Lambda
            info.external_attr = _mode(Path(path)) << 16
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)
    partial.replace(target)
    return target


def extract_zip(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` restoring the Unix modes (``zipfile`` alone drops exec bits)."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            out = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                out.chmod(mode)
    return dest


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (the content hash that gates layer publishing)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unzipped_size(archive: Path) -> int:
    """Sum of the uncompressed sizes of an archive's entries, in bytes (what Lambda counts against 250 MB)."""
    with zipfile.ZipFile(archive) as zf:
        return sum(i.file_size for i in zf.infolist())
