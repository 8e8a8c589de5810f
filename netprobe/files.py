"""Files netprobe writes: checked before any work (a folder that exists and takes a new file), and
written atomically (a temporary file renamed into place, never a half-written one)."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from netprobe.defaults import PATH_LIMIT
from netprobe.errors import InputError, quote


def unwritable(folder: Path) -> str | None:
    """Why no file can be created in `folder` (tested by creating and removing one), or None."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".netprobe-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENOENT and folder.is_dir():  # /proc, /sys: the folder is there, but takes no file
            return "it takes no new files"
        return str(exc.strerror or exc)
    return None


def _usable(folder: Path, missing: str, locked: Callable[[str], str]) -> None:
    """Refuse a folder that does not exist (`missing`) or takes no new file (`locked(reason)`)."""
    if not folder.is_dir():
        raise InputError(missing)
    reason = unwritable(folder)
    if reason:
        raise InputError(locked(reason))


def check_folder(path: str, option: str) -> Path:
    """A folder that exists and can be written in, or one line saying what is wrong with it."""
    shown, folder = quote(path, PATH_LIMIT), Path(path).expanduser()
    _usable(folder, f"{option} {shown} is not a folder; give an existing folder (create it first)",
            lambda reason: f"{option} {shown}: cannot write in it ({reason}): the folder is not writable; "
                           "choose a writable folder")
    return folder


def make_folder(path: str, option: str) -> Path:
    """The folder, created with its parents when missing (as `mkdir -p` does) and writable; or one line
    saying what is wrong with it."""
    shown, folder = quote(path, PATH_LIMIT), Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{option} {shown} is not a folder (a file is in its way); give a folder") from None
    except OSError as exc:
        raise InputError(f"{option} {shown}: cannot create it ({exc.strerror or exc}); choose a writable "
                         "folder") from None
    return check_folder(path, option)


def check_destination(path: str, suffixes: tuple[str, ...], option: str) -> None:
    """Refuse before any work a file that could not be written: wrong suffix, a folder, a missing or
    read-only folder (tested by creating and removing a file in it). `option`: the option's name without
    its dashes, or an argument's name in capitals (FILE)."""
    shown = quote(path, PATH_LIMIT)
    if suffixes and not path.lower().endswith(suffixes):
        raise InputError(f"{_flag(option)} {shown}: give a file name ending in {' or '.join(suffixes)}")
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputError(f"{_flag(option)} {shown} is a folder; give a file name inside it")
    folder = quote(str(target.parent), PATH_LIMIT)
    _usable(target.parent, f"{_flag(option)} {shown}: the folder {folder} does not exist; create it first",
            lambda reason: f"{_flag(option)} {shown}: cannot write in {folder}, the folder is not writable ({reason}); "
                           "choose a writable folder")


def _flag(option: str) -> str:
    return option if option.isupper() else f"--{option}"


def write_atomic(path: str | Path, content: str | bytes) -> None:
    """Write through a temporary file and a rename (never a half-written file), with the mode a
    plain write would give: the existing file's, or 0666 less the umask."""
    path = Path(path).expanduser()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
