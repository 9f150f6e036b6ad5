"""TensorFlow Lite conversion of Keras 3 models and SavedModels, in the converter's five modes, and a
runner for the result. TensorFlow is an optional extra (`pip install "qshard[tflite]"`).

Modes:
- float32:  no optimization;
- dynamic:  dynamic-range quantization (Optimize.DEFAULT): int8 weights, float activations; the
            converter leaves tensors under 1024 elements in float32;
- float16:  float16 weights (Optimize.DEFAULT + supported_types float16);
- int8:     full integer: int8 weights and activations, calibrated on a representative data set
            (inputs and outputs stay float32, with quantize/dequantize at the edges);
- int16x8:  int16 activations, int8 weights (the converter's experimental mode), calibrated too.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np

from qshard.errors import TFLiteError
from qshard.formats.inputs import check_folder_files
from qshard.formats.outputs import atomic_folder, check_new_folder
from qshard.optional import require

MODES = ("float32", "dynamic", "float16", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")




def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return require("tensorflow", "tflite", "TFLite conversion", TFLiteError)


def load_inputs(path: Union[str, os.PathLike], key: str = "x") -> np.ndarray:
    """Inputs from an .npy file, or the array `key` (else the only array) of an .npz file, checked
    to be finite numbers with a first axis of samples."""
    from qshard.accuracy.data import inputs
    return inputs(path, key, TFLiteError)


def check_saved_model(folder: Path) -> None:
    """A SavedModel folder TensorFlow can read without blocking: a saved_model.pb, and nothing
    but regular files and folders below it (TensorFlow would wait forever on a FIFO)."""
    check_folder_files(folder, "SavedModel", TFLiteError)
    if not any((folder / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise TFLiteError(f"{folder}: not a SavedModel folder (no saved_model.pb)")


def check_model_path(p: Path) -> None:
    """A SavedModel folder or a .keras file, checked as far as it can be without TensorFlow."""
    if p.is_dir():
        check_saved_model(p)
    elif p.suffix != ".keras":
        raise TFLiteError(f"{p}: expected a .keras file or a SavedModel folder")
    else:
        from qshard.keras.load import check_keras_file
        check_keras_file(p)


def _converter(tf, model):
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.is_dir():
            return tf.lite.TFLiteConverter.from_saved_model(str(p))
        from qshard.keras.load import load_keras_file
        model = load_keras_file(p, "tflite", "converting a .keras file to TFLite")
    return tf.lite.TFLiteConverter.from_keras_model(model)


def convert(model, mode: str = "float32", representative: Optional[np.ndarray] = None,
            samples: int = 200) -> bytes:
    """A .tflite flatbuffer of `model` (Keras 3 model, .keras path or SavedModel folder) in `mode`;
    the calibrated modes take a representative set of inputs (first axis = samples)."""
    if mode not in MODES:
        raise ValueError(f"TFLite mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(model, (str, os.PathLike)):  # refused before TensorFlow is imported, which takes seconds
        check_model_path(Path(model))
    tf = _tf()
    converter = _converter(tf, model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in CALIBRATED:
        if representative is None or len(representative) == 0:
            raise TFLiteError(f"TFLite mode {mode} needs a representative data set (inputs, e.g. --calibration x.npy)")
        rep = np.asarray(representative)[:samples]

        def gen():
            for i in range(len(rep)):
                yield [rep[i:i + 1].astype(np.float32)]
        converter.representative_dataset = gen
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = (
            [ops.TFLITE_BUILTINS_INT8] if mode == "int8" else
            [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8])
    # The converter prints a "Saved artifact at ..." block on every call.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return converter.convert()
        except Exception as error:
            raise TFLiteError(f"the TFLite converter failed in mode {mode}: {type(error).__name__}: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}") from None


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        return _tf().lite.Interpreter


def run(flatbuffer: bytes, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Outputs of a single-input, single-output TFLite model over x (first axis = samples)."""
    cls = _interpreter_class()
    with contextlib.redirect_stderr(io.StringIO()):
        interpreter = cls(model_content=flatbuffer)
    (inp,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(outputs) != 1:
        raise TFLiteError(f"the TFLite model has {len(outputs)} outputs; qshard evaluates single-output models")
    out = outputs[0]
    results = []
    size = None
    for start in range(0, len(x), batch):
        chunk = np.asarray(x[start:start + batch])
        if size != len(chunk):
            interpreter.resize_tensor_input(inp["index"], [len(chunk), *chunk.shape[1:]])
            interpreter.allocate_tensors()
            size = len(chunk)
        if inp["dtype"] in (np.int8, np.int16) and "quantization" in inp:
            scale, zero = inp["quantization"]
            chunk = np.round(chunk / scale + zero).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.int16):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(np.array(y))
    return np.concatenate(results)


def write(model, out_dir: Union[str, os.PathLike], modes: Iterable[str] = MODES,
          representative: Optional[np.ndarray] = None, force: bool = False,
          inputs: Iterable[Union[str, os.PathLike]] = ()) -> Dict[str, Path]:
    """Write model.<mode>.tflite files into the folder out_dir, which appears with all of them or
    not at all (an existing one is replaced only if force; never a folder holding the model or
    `inputs`). Returns the paths of the written files."""
    out = Path(out_dir)
    sources = [*inputs, model] if isinstance(model, (str, os.PathLike)) else list(inputs)
    check_new_folder(out, force, sources)
    modes = list(modes)
    with atomic_folder(out, force, inputs=sources) as tmp:
        for mode in modes:
            (tmp / f"model.{mode}.tflite").write_bytes(convert(model, mode, representative))
    return {mode: out / f"model.{mode}.tflite" for mode in modes}
