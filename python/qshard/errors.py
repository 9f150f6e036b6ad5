"""The exceptions qshard raises for bad input, one class per kind; messages name the file and the entry."""
from __future__ import annotations


class QshardError(Exception):
    """Base of qshard's user-facing errors (the CLI prints them on one line and exits 2)."""


class ManifestError(QshardError, ValueError):
    """A model.json or weights manifest that is malformed or inconsistent."""


class ShardError(QshardError, OSError):
    """Shard files that are missing, unsafe, or whose sizes do not match the manifest."""


class PatternError(QshardError, ValueError):
    """Quantization patterns that conflict (two dtypes for one weight, two fallthroughs)."""


class OutputError(QshardError, OSError):
    """An output folder that exists (without --force) or cannot be written."""


class SourceError(QshardError, ValueError):
    """An input that cannot be read as a tensor source."""


class ConversionError(QshardError, ValueError):
    """A Keras model (or one of its layers or options) that tfjs-layers cannot run as written."""


class EvalError(QshardError, ValueError):
    """A data set or model that cannot be evaluated as asked."""


class BrowserError(QshardError, RuntimeError):
    """The browser, its driver or tfjs is missing, or the page failed."""


class TFLiteError(QshardError, RuntimeError):
    """TensorFlow is missing, or the converter or interpreter failed."""


class GraphError(QshardError, ValueError):
    """A model that cannot become a tfjs graph model: an unreadable source, an op tfjs lacks."""


class ReferenceUnavailable(ImportError):
    """The official tensorflowjs package is not installed here."""


class TfjsUnavailableError(QshardError, RuntimeError):
    """Node.js or the @tensorflow/tfjs package needed to run a web model cannot be found."""


class TfjsRunError(QshardError, RuntimeError):
    """The tfjs runtime failed to start, load or run a model (its message and stderr are included)."""


class ModelInputError(QshardError, ValueError):
    """Inputs or a data file that do not fit a model (missing or unknown names, shapes, dtypes, NaN)."""


class InputError(QshardError, OSError):
    """An input that is not a regular file (a folder, FIFO, socket or device), or whose size cannot be real."""


class StaleTemporaryWarning(UserWarning):
    """A temporary output left by a qshard run that was killed, found (and removed) by a later run."""
