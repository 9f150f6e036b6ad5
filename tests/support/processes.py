"""Running qshard as a separate process (a hang then fails a test instead of hanging CI, a signal
death shows as one) and taking stock of a folder before and after."""
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

TIMEOUT = 60


def env_with(tmpdir=None, **extra):
    env = dict(os.environ, **{k: str(v) for k, v in extra.items()})
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def run_qshard(args, cwd=None, tmpdir=None, timeout=TIMEOUT, **env):
    """The command in its own process, TMPDIR pointed at a folder the test can watch."""
    return subprocess.run([sys.executable, "-m", "qshard", *map(str, args)], cwd=cwd, env=env_with(tmpdir, **env),
                          capture_output=True, text=True, timeout=timeout)


def start_qshard(args, cwd=None, tmpdir=None, **env):
    """The command started in its own process; stderr is a text pipe."""
    return subprocess.Popen([sys.executable, "-m", "qshard", *map(str, args)], cwd=cwd, env=env_with(tmpdir, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tree_state(root: Path) -> dict:
    """Every path under root with its kind and, for regular files, a hash of their bytes (size and
    mtime for big sparse ones), without opening anything that could block (FIFOs, sockets)."""
    root = Path(root)
    state = {}
    if not root.exists():
        return state
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            digest = (hashlib.sha256(path.read_bytes()).hexdigest() if st.st_size < (64 << 20)
                      else (st.st_size, st.st_mtime_ns))
            state[str(path.relative_to(root))] = ("file", digest)
        else:
            state[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), None)
    return state
