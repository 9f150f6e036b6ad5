"""Opening inputs safely: the one path every reader takes to a model, shard, data or config file.

- Only regular files are read. A FIFO, socket or device is refused at once: it is stat'ed before it is
  opened, opened with O_NONBLOCK (so a FIFO with no writer cannot block the open), and checked again
  with fstat on the open descriptor (no window between the check and the read).
- A size that cannot be real is refused before anything is allocated or read: a file is read only
  up to its size at open time plus one byte, and whole-tensor reads are checked against the memory
  this machine has available.
- JSON is parsed with a fixed nesting limit (not whatever Python's stack depth allows at the call
  site), and NaN / Infinity tokens, which Python accepts and a browser's JSON.parse refuses, are
  reported to the caller.
- Zip archives (.keras, .npz) are checked member by member before anything is inflated.
"""
from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator, List, Optional, Type, Union

from qshard.errors import InputError, QshardError
from qshard.lazy import np

PathLike = Union[str, os.PathLike]
ErrorClass = Type[QshardError]

MAX_JSON_DEPTH = 512          # real model configs nest a few dozen levels; Python's parser stops near 1000
MAX_JSON_BYTES = 1 << 30      # a model.json or config beyond this is not a model's
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_RATIO = 1000          # inflated / compressed size of one member; deflate tops out near 1032


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def require_regular(path: PathLike, what: str, error: ErrorClass = InputError) -> os.stat_result:
    """stat(path), refusing anything but a regular file (for libraries that open the path themselves)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} is missing") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: the {what} is {kind_of(st.st_mode)}, not a regular file")
    return st


def open_regular(path: PathLike, what: str, error: ErrorClass = InputError) -> int:
    """A read-only descriptor of path, which must be a regular file (never blocks on a FIFO)."""
    require_regular(path, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: {what} is missing") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between the stat and the open
        os.close(fd)
        raise error(f"{path}: the {what} is {kind_of(st.st_mode)}, not a regular file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def open_file(path: PathLike, what: str, error: ErrorClass = InputError) -> BinaryIO:
    """open_regular as a binary file object."""
    return os.fdopen(open_regular(path, what, error), "rb")


def check_folder_files(folder: PathLike, what: str, error: ErrorClass = InputError, limit: int = 100_000) -> None:
    """Every file below folder is a regular file (for libraries such as TensorFlow that read a
    folder themselves and would block on a FIFO); at most `limit` entries are looked at."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        seen += len(dirs) + len(files)
        if seen > limit:
            raise error(f"{folder}: more than {limit} files below it; not a {what}")
        for name in files:
            require_regular(os.path.join(root, name), f"{what} file", error)


def read_regular(path: PathLike, what: str, error: ErrorClass = InputError, limit: int = MAX_JSON_BYTES) -> bytes:
    """The whole of a regular file, refused if larger than limit (read up to its size at open time
    plus one byte, so a file that keeps growing cannot make the read unbounded)."""
    with open_file(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise error(f"{path}: the {what} is {size} bytes; qshard reads at most {limit}")
        try:
            data = f.read(size + 1)
        except OSError as e:
            raise error(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{path}: the {what} grew past {limit} bytes while being read")
    return data


def read_exact(fd: int, out: memoryview, offset: int, path: PathLike, error: ErrorClass = InputError) -> None:
    """Fill out with the file's bytes from offset (pread, as many calls as the kernel needs)."""
    done = 0
    while done < len(out):
        try:
            got = os.preadv(fd, [out[done:]], offset + done)
        except OSError as e:
            raise error(f"{path}: cannot read: {e.strerror or e}") from None
        if got == 0:
            raise error(f"{path}: ends early (byte {offset + done} of {offset + len(out)}); "
                        f"was it changed while being read?")
        done += got


def read_npy_header(f, where: str, error: ErrorClass = InputError):
    """(shape, fortran_order, dtype) of the .npy array whose header starts at f's position; any
    header numpy cannot parse is an error naming `where`. Nothing is unpickled."""
    try:
        version = np.lib.format.read_magic(f)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        return reader(f)
    except Exception as e:  # numpy's header parser raises many kinds for hostile text; all mean "not .npy"
        raise error(f"{where}: not a readable .npy array ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------------
# Memory.

def available_memory() -> int:
    """Bytes this process could still allocate: MemAvailable, lowered by a cgroup v2 memory limit."""
    best = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    best = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if best is None:
        try:
            best = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            best = 1 << 34
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            best = min(best, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return best


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def check_memory(nbytes: int, what: str, error: ErrorClass = InputError) -> None:
    """Refuse to hold nbytes in memory when the machine does not have them available."""
    if nbytes > (1 << 24) and nbytes > available_memory():
        raise error(f"{what} needs {human_bytes(nbytes)} in memory; this machine has "
                    f"{human_bytes(available_memory())} available")


# --------------------------------------------------------------------------------------------------
# JSON.

def too_deep(raw: bytes) -> Optional[int]:
    """The nesting depth of [ and { in JSON text when it exceeds MAX_JSON_DEPTH, else None
    (brackets inside strings do not count). For text Python's parser refused as too deep:
    parsed documents are measured by nesting(), which needs no numpy."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return None
    # Drop escaped backslashes, then escaped quotes; every quote left opens or closes a string.
    code = np.frombuffer(raw.replace(b"\\\\", b"").replace(b'\\"', b""), np.uint8)
    inside = np.bitwise_xor.accumulate((code == ord('"')).view(np.uint8))
    step = ((code == ord("[")) | (code == ord("{"))).view(np.int8) - ((code == ord("]")) | (code == ord("}")))
    step[inside.view(bool)] = 0
    depth = int(np.cumsum(step, dtype=np.int32).max(initial=0))
    return depth if depth > MAX_JSON_DEPTH else None


def parse_json(raw: Union[bytes, str], source: str, error: ErrorClass, what: str = "file",
               constants: Optional[List[str]] = None) -> Any:
    """Parse JSON text (UTF-8 bytes or str) with a fixed nesting limit; errors name the source.
    NaN / Infinity / -Infinity are parsed as floats and appended to `constants` when given (else
    refused): Python's json accepts them, JSON.parse in a browser does not."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if not data.strip():
        raise error(f"{source}: the {what} is empty")
    try:
        text = data.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise error(f"{source}: the {what} is not UTF-8 text (byte {e.start})") from None
    def deep(depth: Optional[int]) -> QshardError:
        return error(f"{source}: the {what} nests {depth or 'too many'} levels deep; qshard reads at most {MAX_JSON_DEPTH}")

    def constant(name: str) -> float:
        if constants is None:
            raise ValueError(f"{name} is not JSON (a browser's JSON.parse refuses it)")
        constants.append(name)
        return float(name)

    try:
        document = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise error(f"{source}: invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise deep(too_deep(data)) from None
    except ValueError as e:
        raise error(f"{source}: invalid JSON: {e}") from None
    except MemoryError:
        raise error(f"{source}: the {what} is too big to parse in the memory available") from None
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:  # (else it cannot nest deeper)
        depth = nesting(document)
        if depth > MAX_JSON_DEPTH:
            raise deep(depth)
    return document


def nesting(document: Any) -> int:
    """How deep lists and objects nest in a document json.loads made (0 for a plain value): level
    by level, without recursion (~3 ms for a 1 MB graph model.json)."""
    depth, level = 0, [document] if type(document) in (dict, list) else []
    while level:
        depth += 1
        level = [child for value in level for child in (value.values() if type(value) is dict else value)
                 if type(child) is dict or type(child) is list]
    return depth


# --------------------------------------------------------------------------------------------------
# Zip archives.

@contextmanager
def open_zip(path: PathLike, what: str, error: ErrorClass = InputError,
             max_total: Optional[int] = None) -> Iterator[zipfile.ZipFile]:
    """A zip archive read from a regular file, its members checked before anything is inflated: a
    sane member count, no member inflating beyond MAX_ZIP_RATIO times its compressed size, and
    (max_total) no more inflated bytes in all than that."""
    with open_file(path, what, error) as f:
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) as e:
            raise error(f"{path}: the {what} is not a readable zip archive ({e})") from None
        with archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise error(f"{path}: the {what} has {len(infos)} members; qshard reads at most {MAX_ZIP_MEMBERS}")
            total = 0
            for info in infos:
                if info.flag_bits & 0x1:  # zipfile would ask for a password (RuntimeError) when opened
                    raise error(f"{path}: member {info.filename!r} of the {what} is encrypted; qshard reads "
                                f"only unencrypted archives")
                if (info.compress_type != zipfile.ZIP_STORED
                        and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1)):
                    raise error(f"{path}: member {info.filename!r} of the {what} would inflate "
                                f"{info.compress_size} bytes to {info.file_size} (a zip bomb?)")
                total += info.file_size
            if max_total is not None and total > max_total:
                raise error(f"{path}: the {what} inflates to {human_bytes(total)}; at most "
                            f"{human_bytes(max_total)} fit in the memory available")
            yield archive


def read_member(archive: zipfile.ZipFile, name: str, source: str, error: ErrorClass, limit: int) -> bytes:
    """One member's bytes, at most limit of them (as inflated, checked against the declared size)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise error(f"{source}: has no {name!r}") from None
    if info.file_size > limit:
        raise error(f"{source}: {name!r} is {info.file_size} bytes; qshard reads at most {limit}")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise error(f"{source}: {name!r} cannot be read ({e})") from None
    if len(data) > limit:
        raise error(f"{source}: {name!r} inflates past {limit} bytes")
    return data
