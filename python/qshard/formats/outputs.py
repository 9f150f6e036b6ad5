"""Placing outputs safely: the one path every writer takes to the disk.

- An output never overlaps an input: it is not an input, not a folder holding one, not the root
  folder and not the current folder or one holding it, even with --force (check_output).
- An output appears whole or not at all: it is written under a temporary name beside it and
  renamed into place when complete; --force swaps a finished folder with the old one in one
  rename(2) (RENAME_EXCHANGE) where the file system offers it.
- A temporary is named `.NAME.qshard-XXXXXX` (`.tmp` added for files) and its writer holds an
  flock on it while it exists. The kernel drops the lock when the writer dies, even by SIGKILL, so
  the next run writing NAME finds a temporary it can lock, knows its writer is gone, removes it
  and says so. No pid file is needed and a reused pid cannot fool it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Union

from qshard.errors import OutputError, StaleTemporaryWarning

PathLike = Union[str, os.PathLike]
TEMP_MARK = ".qshard-"


def _real(path: PathLike) -> str:
    return os.path.realpath(os.path.abspath(path))


def _within(child: str, parent: str) -> bool:
    return child == parent or os.path.commonpath([child, parent]) == parent


def _same_or_above(out: str, target: str) -> bool:
    """out is target or one of the folders holding it: by path, and by device + inode so that a
    bind mount or a second path to the same folder is caught too."""
    if _within(target, out):
        return True
    try:
        out_id = os.stat(out)
    except OSError:
        return False
    path = target
    while True:
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == (out_id.st_dev, out_id.st_ino):
                return True
        except OSError:
            pass
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def check_output(out: PathLike, inputs: Iterable[PathLike] = ()) -> None:
    """Refuse an output that is, or holds, an input, the root folder or the current folder: writing
    it (with --force: replacing it) would destroy what is being read or where the user stands."""
    real = _real(out)
    if os.path.dirname(real) == real:
        raise OutputError(f"{out}: is the root folder; give a new folder for the output")
    if _same_or_above(real, _real(os.getcwd())):
        raise OutputError(f"{out}: is the current folder or holds it; give a new folder for the output")
    for source in inputs:
        if source is None:
            continue
        if _same_or_above(real, _real(source)):
            what = "is" if _real(source) == real else "holds"
            raise OutputError(f"{out}: {what} the input {source}; writing the output there would destroy "
                              f"the input (even --force does not)")
    for source in inputs:
        if source is not None and os.path.isdir(source) and _same_or_above(_real(source), real) \
                and os.path.isdir(out):
            # a folder inside a folder input (a SavedModel's variables/): replacing it changes the input
            raise OutputError(f"{out}: already exists inside the input {source}; replacing it would change "
                              f"the input (even --force does not)")


# --------------------------------------------------------------------------------------------------
# Temporaries and their locks.

def _lock(path: Path) -> Optional[int]:
    """An flock held on path for as long as the returned descriptor is open (None where the file
    system does not lock: the temporary is then left to the user if the run is killed)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: Optional[int]) -> None:
    if fd is not None:
        os.close(fd)


def clean_stale(parent: PathLike, name: str) -> List[Path]:
    """Remove the temporaries of output `name` in parent whose writers are gone (their lock is
    free), with a StaleTemporaryWarning naming them; returns what was removed."""
    prefix = f".{name}{TEMP_MARK}"
    removed, kept = [], []
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return []
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith(f"{prefix}old-"):
            kept.append(path)  # the previous output, moved aside by an interrupted two-step --force
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue  # a symlink, or gone already
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its writer is alive (or the lock cannot tell): leave it
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    if removed:
        warnings.warn(StaleTemporaryWarning(
            f"removed {', '.join(map(str, removed))}: left by a qshard run that was killed while writing {name}"),
            stacklevel=3)
    for path in kept:
        warnings.warn(StaleTemporaryWarning(
            f"{path}/previous is the earlier {name}, moved aside by a --force run that was killed; "
            f"move it back or delete it"), stacklevel=3)
    return removed


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one rename (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes  # (here: its import is ~2 ms of every command's start-up, and only --force needs it)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _parent(out: Path) -> Path:
    return out.parent if str(out.parent) else Path(".")


# --------------------------------------------------------------------------------------------------
# The two writers' entry points.

def check_new_folder(out_dir: PathLike, force: bool = False, inputs: Iterable[PathLike] = ()) -> None:
    """What atomic_folder checks before writing, for callers to check before long work too."""
    out = Path(out_dir)
    check_output(out, inputs)
    if (out.exists() or out.is_symlink()) and not force:
        raise OutputError(f"{out}: already exists (use --force / force=True to replace it)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")


@contextmanager
def atomic_folder(out_dir: PathLike, force: bool = False, inputs: Iterable[PathLike] = ()) -> Iterator[Path]:
    """A temporary folder beside out_dir that becomes out_dir only if the block completes. Refuses
    an existing out_dir unless force, and an out_dir that overlaps an input even then."""
    out = Path(out_dir)
    check_new_folder(out, force, inputs)
    parent = _parent(out)
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # removed again if the write fails
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(parent, out.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMP_MARK}", dir=parent))
    except OSError as error:
        _remove_empty(created)
        raise OutputError(f"{out}: cannot create the output folder: {error.strerror or error}") from None
    lock = _lock(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if force and out.exists():
            _replace_folder(tmp, out, parent)
        else:
            # rename(2) refuses to replace a non-empty folder, so if another process created OUT
            # while this one was converting, its output stays and this one reports it.
            try:
                os.rename(tmp, out)
            except OSError as error:
                if out.exists():
                    raise OutputError(f"{out}: was created by another process while converting; "
                                      f"left as it is (use --force to replace it)") from None
                raise OutputError(f"{out}: cannot move the finished output into place: "
                                  f"{error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    finally:
        _unlock(lock)


def _remove_empty(folders: Iterable[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass


def _replace_folder(tmp: Path, out: Path, parent: Path) -> None:
    """out := tmp. One atomic swap where the file system has it (tmp then holds the old output,
    removed after); else the old output is moved aside, the new one moved in, the old one removed."""
    try:
        swapped = _exchange(tmp, out)
    except OSError as error:
        raise OutputError(f"{out}: cannot replace it: {error.strerror or error}") from None
    if swapped:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMP_MARK}old-", dir=parent))
    os.replace(out, old / "previous")
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def write_file_atomically(path: PathLike, data: bytes, *, force: bool = True,
                          inputs: Iterable[PathLike] = ()) -> Path:
    """Write data to path through a temporary file beside it: the file appears whole or not at
    all. Refuses an existing path unless force, a folder, and a path that overlaps an input."""
    path = Path(path)
    check_output(path, inputs)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if not force and (path.exists() or path.is_symlink()):
        raise OutputError(f"{path}: already exists (use --force to replace it)")
    parent = _parent(path)
    if not parent.is_dir():
        raise OutputError(f"{path}: the folder {parent} does not exist")
    clean_stale(parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=".tmp", dir=parent)
    except OSError as error:
        raise OutputError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # while the lock is held: a cleaner never sees it unlocked
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(f"{path}: cannot write: {error.strerror or error}") from None
        raise
    return path


class Scratch:
    """A locked scratch folder named `.NAME.qshard-XXXXXX` in parent (default: the system's
    temporary folder), for work that outlives one block (a tfjs runner); remove() deletes it. One
    left by a killed run is removed by the next run asking for `name` (see clean_stale)."""

    def __init__(self, name: str, parent: Optional[PathLike] = None):
        parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        clean_stale(parent, name)
        self.path = Path(tempfile.mkdtemp(prefix=f".{name}{TEMP_MARK}", dir=parent))
        self._lock = _lock(self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        _unlock(self._lock)
        self._lock = None


@contextmanager
def temporary_folder(name: str, parent: Optional[PathLike] = None) -> Iterator[Path]:
    """A Scratch folder for the length of the block."""
    scratch = Scratch(name, parent)
    try:
        yield scratch.path
    finally:
        scratch.remove()
