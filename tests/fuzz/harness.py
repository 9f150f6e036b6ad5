"""What the fuzzers share: run atheris on one_input, count qshard's own errors as the expected way
to refuse an input, and remove the work folder at the end."""
import shutil
import sys

import atheris

from qshard.errors import QshardError


def refusing(read, *args) -> None:
    """read(*args); a QshardError is a refusal, the expected outcome for a bad input."""
    try:
        read(*args)
    except QshardError:
        pass


def fuzz(one_input, work: str) -> None:
    """atheris over one_input with the command line's options; work is removed afterwards."""
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)
