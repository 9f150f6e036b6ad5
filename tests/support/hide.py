"""Running the qshard command in a fresh interpreter where some installed modules cannot be imported,
as on a machine without them (for the missing-module messages)."""
import subprocess
import sys

_PROLOGUE = """
import sys

class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Hidden())
from qshard.cli import main
sys.exit(main(ARGV))
"""


def run_without(modules, *argv: str) -> subprocess.CompletedProcess:
    """`qshard ARGV...` in a new Python process in which importing any of `modules` fails."""
    code = f"HIDDEN = {set(modules)!r}\nARGV = {list(argv)!r}\n" + _PROLOGUE
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
