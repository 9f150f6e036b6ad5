"""From what a TensorFlow user has to one concrete function with named inputs and outputs.

Sources: a Keras 3 model object or `.keras` file, a tf_keras / Keras 2 model object or whole-model
`.h5` file (loaded with tf_keras), or a SavedModel folder (any of `tf.saved_model.save`, Keras
`model.export()`, tf_keras `model.save(folder)`), whose signature is picked by name.

Keras models are traced as `model(x, training=False)` under tf.function. Their recurrent layers
are switched to `unroll=True` for the trace (and back after): Keras' default is a While loop over
TensorLists, which tfjs runs only with executeAsync (predict refuses control flow); unrolled, it
is plain ops that predict runs. Unrolling needs a fixed sequence length: without one, the loop
stays (the report says the model needs executeAsync).
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

from qshard.errors import GraphError
from qshard.optional import require

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
DEFAULT_SIGNATURE = "serving_default"
DEFAULT_TAGS = ("serve",)


@dataclass
class Traced:
    """A concrete function and the names its inputs and outputs get in the web model's signature."""

    function: Any  # tf ConcreteFunction
    input_keys: List[str]
    output_keys: List[str]
    generated_by: str
    dict_outputs: bool = False  # the function returns a dict (structured output names exist)
    source: str = ""
    keep_alive: List[Any] = field(default_factory=list, repr=False)  # the model the function captures


def import_tensorflow() -> Any:
    """TensorFlow, or a GraphError saying how to install it (imported only when converting)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return require("tensorflow", "convert", "converting to a graph model", GraphError)


def is_saved_model(path: Path) -> bool:
    """A folder holding saved_model.pb (or .pbtxt)."""
    return path.is_dir() and any((path / name).is_file() for name in SAVED_MODEL_FILES)


def _is_keras3(model) -> bool:
    return type(model).__module__.startswith("keras.") or any(
        c.__module__.startswith("keras.src") for c in type(model).__mro__)


def _sublayers(layer) -> Iterator[Any]:
    """The layer and every layer nested in it (models, wrappers such as Bidirectional and
    TimeDistributed, the layers of a cell), each once."""
    seen = set()
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attr in ("layers", "forward_layer", "backward_layer", "layer", "cell"):
            child = getattr(current, attr, None)
            if isinstance(child, (list, tuple)):
                stack.extend(child)
            elif child is not None and hasattr(child, "get_config"):
                stack.append(child)


@contextmanager
def unrolled(model) -> Iterator[None]:
    """Switch every recurrent layer of a Keras model to unroll=True while the block runs."""
    changed: List[Tuple[Any, str, Any]] = []
    try:
        for layer in _sublayers(model):
            if hasattr(layer, "unroll") and hasattr(layer, "cell"):
                changed.append((layer, "unroll", layer.unroll))
                layer.unroll = True
                # tf_keras' GRU/LSTM decide at construction whether a fused (cuDNN-style) kernel may run.
                if hasattr(layer, "_could_use_gpu_kernel"):
                    changed.append((layer, "_could_use_gpu_kernel", layer._could_use_gpu_kernel))
                    layer._could_use_gpu_kernel = False
        yield
    finally:
        for layer, attr, value in reversed(changed):
            setattr(layer, attr, value)


def loop_layer(model) -> Optional[str]:
    """The name of a recurrent layer whose input has no fixed sequence length (it cannot be
    unrolled), or None."""
    for layer in _sublayers(model):
        if not (hasattr(layer, "unroll") and hasattr(layer, "cell")):
            continue
        try:
            shape = tuple(layer.input.shape)
        except Exception:  # a layer used several times, or in a subclassed model: Keras checks at trace time
            continue
        if len(shape) >= 2 and shape[1] is None:
            return layer.name
    return None


def _keras_input_names(model) -> List[str]:
    names = []
    for i, tensor in enumerate(model.inputs):
        history = getattr(tensor, "_keras_history", None)
        layer = getattr(history, "operation", None) or getattr(history, "layer", None)
        name = getattr(layer, "name", None) or getattr(tensor, "name", "") or f"input_{i}"
        names.append(name.split(":")[0])
    return names


def trace_keras(model, source: str = "") -> Traced:
    """Trace a Keras 3 or tf_keras model in inference mode, recurrent layers unrolled."""
    tf = import_tensorflow()
    source = source or f"Keras model {getattr(model, 'name', '')!r}"
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise GraphError(f"{source}: the model has no defined inputs (build it with keras.Input, or call it once)")
    names = _keras_input_names(model)
    specs = [tf.TensorSpec([None if d is None else int(d) for d in t.shape], tf.as_dtype(t.dtype), name=n)
             for t, n in zip(inputs, names)]

    def call(*xs):
        return model(xs[0] if len(xs) == 1 else list(xs), training=False)

    # Without a fixed sequence length the loop stays a loop: tfjs runs it with executeAsync.
    with unrolled(model) if loop_layer(model) is None else nullcontext():
        try:
            function = tf.function(call).get_concrete_function(*specs)
        except GraphError:
            raise
        except Exception as error:
            raise GraphError(f"{source}: tracing the model failed: {type(error).__name__}: {error}") from None
    structure = function.structured_outputs
    dict_outputs = isinstance(structure, dict)
    count = len(function.outputs)
    if dict_outputs:
        output_keys = sorted(structure)
    else:
        output_keys = [str(n) for n in (getattr(model, "output_names", None) or [])]
        if len(output_keys) != count or len(set(output_keys)) != count:
            output_keys = [f"output_{i}" for i in range(count)]
    kind = "keras" if _is_keras3(model) else "tf_keras"
    version = _keras_version(kind)
    return Traced(function, names, output_keys, f"{kind} {version}".strip(), dict_outputs, source, [model])


def _keras_version(kind: str) -> str:
    try:
        module = __import__("keras" if kind == "keras" else "tf_keras")
        return getattr(module, "__version__", "")
    except ImportError:
        return ""


def _signature_keys(function, tf) -> Tuple[List[str], List[str], bool]:
    args, kwargs = function.structured_input_signature
    specs = tf.nest.flatten((args, kwargs))
    user_inputs = len(specs)
    input_keys = [s.name or f"input_{i}" for i, s in enumerate(specs)]
    if len(function.inputs) < user_inputs:
        raise GraphError("the signature lists more inputs than its function takes")
    structure = function.structured_outputs
    if isinstance(structure, dict):
        return input_keys, sorted(structure), True
    return input_keys, [f"output_{i}" for i in range(len(function.outputs))], False


def trace_saved_model(path: Path, signature: Optional[str] = None, tags: Optional[Sequence[str]] = None) -> Traced:
    """The named signature (default serving_default) of a SavedModel loaded with the given tags."""
    tf = import_tensorflow()
    signature = signature or DEFAULT_SIGNATURE
    tags = list(tags) if tags else list(DEFAULT_TAGS)
    try:
        loaded = tf.saved_model.load(str(path), tags=tags)
    except Exception as error:
        raise GraphError(f"{path}: TensorFlow could not load the SavedModel with tags {','.join(tags)}: "
                         f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    signatures = getattr(loaded, "signatures", {})
    if signature not in signatures:
        have = ", ".join(sorted(signatures)) or "none"
        raise GraphError(f"{path}: no signature {signature!r} (the SavedModel has: {have})")
    function = signatures[signature]
    input_keys, output_keys, dict_outputs = _signature_keys(function, tf)
    version = getattr(loaded, "tensorflow_version", "") or tf.__version__
    return Traced(function, input_keys, output_keys, f"TensorFlow {version}", dict_outputs, str(path), [loaded])


def load_model_file(path: Path) -> Any:
    """A Keras 3 model from a .keras file, or a tf_keras / Keras 2 whole model from an .h5 file."""
    import_tensorflow()
    module, what = ("keras", "Keras 3") if path.suffix == ".keras" else ("tf_keras", "tf_keras")
    keras = require(module, "convert", f"{path}: loading it as a graph model's source", GraphError)
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as error:  # Keras raises many kinds for a bad file
        raise GraphError(f"{path}: {what} could not load it: {type(error).__name__}: {error}") from None


def check_model_path(path: Path) -> None:
    """What can be checked of a model path before TensorFlow opens it: regular files only (in a
    SavedModel folder, every file), and a .keras archive that inflates to what fits in memory."""
    from qshard.formats.inputs import check_folder_files, require_regular
    if path.is_dir():
        check_folder_files(path, "SavedModel", GraphError)
    elif path.suffix == ".keras":
        from qshard.keras.load import check_keras_file
        check_keras_file(path)
    else:
        require_regular(path, "HDF5 model" if path.suffix in (".h5", ".hdf5") else "model file", GraphError)


def trace(src: Union[str, os.PathLike, Any], signature: Optional[str] = None,
          tags: Optional[Sequence[str]] = None) -> Traced:
    """Load `src` (a model object, .keras, .h5 or SavedModel folder) and trace it for conversion."""
    if not isinstance(src, (str, os.PathLike)):
        if hasattr(src, "inputs") and hasattr(src, "layers"):
            if signature or tags:
                raise GraphError("signature and tags apply to SavedModels only, not to a Keras model")
            return trace_keras(src)
        raise GraphError(f"cannot convert a {type(src).__name__}: give a Keras model, a .keras or .h5 file, "
                         f"or a SavedModel folder")
    path = Path(src)
    if not path.exists():
        raise GraphError(f"{path}: no such file or folder")
    check_model_path(path)  # before TensorFlow, which would block on a FIFO and load a zip bomb
    if is_saved_model(path):
        return trace_saved_model(path, signature, tags)
    if signature or tags:
        raise GraphError(f"{path}: signature and tags apply to SavedModel folders only")
    if path.is_dir():
        raise GraphError(f"{path}: a folder without saved_model.pb is not a SavedModel")
    if path.suffix in (".keras", ".h5", ".hdf5"):
        return trace_keras(load_model_file(path), str(path))
    raise GraphError(f"{path}: expected a .keras file, a Keras 2 .h5 file or a SavedModel folder")
