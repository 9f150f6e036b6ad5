"""Keras models to TensorFlow.js layers models that stock tfjs-layers 4.22 loads.

Keras 3 (`tf.keras` since TensorFlow 2.16) writes configs that tfjs-layers cannot read (`batch_shape`,
DTypePolicy objects, a new node format), and the official converter passes them through, so the
result fails in `tf.loadLayersModel`. qshard translates the topology into the Keras 2 form that
tfjs-layers reads, names the weights as tfjs-layers builds them, and writes them through its own
shard writer (quantized per the patterns, as `qshard quantize` does).

The translation is strict: every option of every layer is either translated, checked to have the
value that tfjs-layers computes with, or is one that cannot change a prediction (initializers,
regularizers, constraints, trainable). Anything else is an error naming the layer and the option,
never a model that loads and computes something else.

Sources: a Keras 3 model object or `.keras` file (needs the `keras` package; `qshard[keras]`), and a
tf_keras / Keras 2 `.h5` model file (read with h5py; no TensorFlow needed) or model object.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from . import __version__
from . import manifest as mf
from .errors import QshardError
from .writer import DEFAULT_SHARD_SIZE, atomic_folder, check_shard_size, first_duplicate

KERAS2_VERSION = "2.15.0"  # the topology dialect written (what tfjs-layers 4.22 reads)


class ConversionError(QshardError, ValueError):
    """A Keras model (or one of its layers or options) that tfjs-layers cannot run as written."""


# --------------------------------------------------------------------------------------------------
# What tfjs-layers 4.22 runs.

# Keras activation name -> tfjs-layers name. Keras 3's hard_sigmoid is relu6(x + 3) / 6 while
# tfjs's hardSigmoid is Keras 2's 0.2 x + 0.5: not listed, so refused.
ACTIVATIONS = {"linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "softmax": "softmax",
               "tanh": "tanh", "elu": "elu", "selu": "selu", "softplus": "softplus", "softsign": "softsign",
               "gelu": "gelu", "mish": "mish", "swish": "swish", "silu": "swish", "log_softmax": "logSoftmax"}

# Options that cannot change what a loaded model predicts: dropped from the translated config.
_INERT_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_INERT = {"trainable", "seed", "quantization_config"}

# Checked options that tfjs-layers also reads (the others are checked, then left out).
_EMIT_CHECKED = {"padding", "stateful", "sparse", "ragged"}

# class -> {option: rule}. Rules: "keep" (copied as is), "activation", ("only", allowed values,
# why), ("rename", new name), "drop" (cannot affect inference; removed). Options not listed are
# errors unless inert.
_CONV = {"filters": "keep", "kernel_size": "keep", "strides": "keep", "padding": ("only", ("valid", "same"), ""),
         "data_format": "keep", "dilation_rate": "keep", "activation": "activation", "use_bias": "keep",
         "groups": ("only", (1,), "grouped convolution is not in tfjs-layers")}
_POOL = {"pool_size": "keep", "strides": "keep", "padding": ("only", ("valid", "same"), ""), "data_format": "keep"}
_GLOBAL_POOL = {"data_format": "keep", "keepdims": ("only", (False,), "tfjs-layers has no keepdims")}
_RNN = {"units": "keep", "activation": "activation", "recurrent_activation": "activation", "use_bias": "keep",
        "return_sequences": "keep", "return_state": "keep", "go_backwards": "keep",
        "stateful": ("only", (False,), "stateful RNNs are not converted"), "unroll": "keep",
        "dropout": "keep", "recurrent_dropout": "keep", "implementation": "drop",
        "zero_output_for_mask": "drop", "time_major": ("only", (False,), "")}
RULES: Dict[str, Dict[str, Any]] = {
    "InputLayer": {"batch_input_shape": "keep", "batch_shape": ("rename", "batch_input_shape"), "dtype": "keep",
                   "sparse": ("only", (False,), "sparse inputs are not in tfjs"),
                   "ragged": ("only", (False,), "ragged inputs are not in tfjs"),
                   "optional": ("only", (False,), "optional inputs are not in tfjs-layers"), "input_shape": "drop"},
    "Dense": {"units": "keep", "activation": "activation", "use_bias": "keep",
              "lora_rank": ("only", (None,), "LoRA-adapted Dense layers are not in tfjs-layers"),
              "lora_alpha": "drop"},
    "Conv1D": dict(_CONV, padding=("only", ("valid", "same"), "tfjs-layers 4.22 does not implement causal padding")),
    "Conv2D": _CONV,
    "DepthwiseConv2D": {"kernel_size": "keep", "strides": "keep", "padding": ("only", ("valid", "same"), ""),
                        "depth_multiplier": "keep", "data_format": "keep", "dilation_rate": "keep",
                        "activation": "activation", "use_bias": "keep",
                        "groups": ("only", (1,), "grouped convolution is not in tfjs-layers")},
    "SeparableConv2D": {"filters": "keep", "kernel_size": "keep", "strides": "keep",
                        "padding": ("only", ("valid", "same"), ""), "depth_multiplier": "keep",
                        "data_format": "keep", "dilation_rate": "keep", "activation": "activation",
                        "use_bias": "keep", "groups": ("only", (1,), "grouped convolution is not in tfjs-layers")},
    "MaxPooling1D": _POOL, "MaxPooling2D": _POOL, "AveragePooling1D": _POOL, "AveragePooling2D": _POOL,
    "GlobalAveragePooling1D": _GLOBAL_POOL, "GlobalAveragePooling2D": _GLOBAL_POOL,
    "GlobalMaxPooling1D": _GLOBAL_POOL, "GlobalMaxPooling2D": _GLOBAL_POOL,
    "BatchNormalization": {"axis": "keep", "momentum": "keep", "epsilon": "keep", "center": "keep", "scale": "keep",
                           "synchronized": "drop", "renorm": ("only", (False,), "batch renormalization is not in "
                                                              "tfjs-layers"),
                           "renorm_clipping": "drop", "renorm_momentum": "drop", "fused": "drop",
                           "virtual_batch_size": ("only", (None,), ""), "adjustment": ("only", (None,), "")},
    "LayerNormalization": {"axis": "keep", "epsilon": "keep", "center": "keep", "scale": "keep",
                           "rms_scaling": ("only", (False,), "RMS scaling is not in tfjs-layers")},
    "Dropout": {"rate": "keep", "noise_shape": "keep"},
    "Flatten": {"data_format": "keep"},
    "Reshape": {"target_shape": "keep"},
    "Activation": {"activation": "activation"},
    "ReLU": {"max_value": "keep", "negative_slope": ("only", (0, 0.0), "tfjs-layers' ReLU has no negative slope"),
             "threshold": ("only", (0, 0.0), "tfjs-layers' ReLU has no threshold")},
    "Add": {}, "Concatenate": {"axis": "keep"},
    "Embedding": {"input_dim": "keep", "output_dim": "keep", "mask_zero": "keep", "input_length": "keep",
                  "sparse": ("only", (False,), ""), "lora_rank": ("only", (None,), ""), "lora_alpha": "drop"},
    "LSTM": dict(_RNN, unit_forget_bias="keep"),
    "GRU": dict(_RNN, reset_after=("only", (False,), "tfjs-layers' GRU has no reset_after=True (Keras' default); "
                                   "build the GRU with reset_after=False")),
}
# Weight names: Keras 3 variable -> the name tfjs-layers gives it (per layer class).
_RENAME = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"}}


def _fail(layer: str, cls: str, problem: str) -> ConversionError:
    return ConversionError(f"layer {layer!r} ({cls}): {problem}")


def _plain(value):
    """Keras 3 nested objects ({'module', 'class_name', 'config', 'registered_name'}) -> plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dtype_name(value, layer: str, cls: str) -> str:
    if isinstance(value, dict):  # a DTypePolicy
        value = (value.get("config") or {}).get("name")
    if value is None:
        return "float32"
    if value not in ("float32", "int32") and not (cls == "InputLayer" and value in ("int64", "bool")):
        raise _fail(layer, cls, f"dtype policy {value!r}: only float32 layers convert (tfjs computes in float32)")
    return {"int64": "int32"}.get(value, value)


def translate_layer(cls: str, config: Dict[str, Any]) -> Dict[str, Any]:
    """One layer's config (Keras 3 or 2 form) -> the Keras 2 form tfjs-layers reads, or an error."""
    name = config.get("name", "?")
    if cls not in RULES:
        supported = ", ".join(sorted(RULES))
        raise _fail(name, cls, f"this layer class is not converted (supported: {supported})")
    rules = RULES[cls]
    out: Dict[str, Any] = {"name": name, "trainable": bool(config.get("trainable", True))}
    for key, value in config.items():
        if key in ("name",) or key in _INERT or key.endswith(_INERT_SUFFIXES):
            continue
        if key == "dtype":
            out["dtype"] = _dtype_name(value, name, cls)
            continue
        if key in ("batch_input_shape", "batch_shape") and cls != "InputLayer":
            out["batch_input_shape"] = _plain(value)
            continue
        rule = rules.get(key)
        if rule is None:
            raise _fail(name, cls, f"option {key}={value!r} is not converted (tfjs-layers may not compute it)")
        if rule == "keep":
            out[key] = _plain(value)
        elif rule == "drop":
            continue
        elif rule == "activation":
            act = value.get("class_name") if isinstance(value, dict) else value
            if isinstance(act, str) and act.lower() in ACTIVATIONS:
                out[key] = ACTIVATIONS[act.lower()]
            else:
                raise _fail(name, cls, f"option {key}={act!r}: activation not in tfjs-layers "
                                       f"(supported: {', '.join(sorted(ACTIVATIONS))})")
        elif rule[0] == "rename":
            out[rule[1]] = _plain(value)
        elif rule[0] == "only":
            if value not in rule[1]:
                why = f": {rule[2]}" if rule[2] else ""
                raise _fail(name, cls, f"option {key}={value!r} is not supported{why}")
            if key in _EMIT_CHECKED:
                out[key] = value
    if cls == "InputLayer" and "batch_input_shape" not in out:
        raise _fail(name, cls, "no input shape")
    out.setdefault("dtype", "float32")
    return out


# --------------------------------------------------------------------------------------------------
# Topologies.

def _node_refs(node, layer: str, cls: str) -> List[list]:
    """A Keras 3 inbound node ({'args', 'kwargs'}) or a Keras 2 one (a list) -> Keras 2 refs."""
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        return [[r[0], r[1], r[2], r[3] if len(r) > 3 else {}] for r in node]
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None and k != "training"}
    if kwargs:
        raise _fail(layer, cls, f"called with arguments {sorted(kwargs)}, which tfjs-layers topologies cannot carry")
    refs = []

    def collect(arg):
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            history = arg["config"]["keras_history"]
            refs.append([history[0], history[1], history[2], {}])
        elif isinstance(arg, (list, tuple)):
            for a in arg:
                collect(a)
        else:
            raise _fail(layer, cls, f"called with a non-tensor argument {arg!r}")
    collect(node.get("args", []))
    return refs


def _endpoints(value) -> List[list]:
    """input_layers / output_layers: [[name, node, tensor], ...] (Keras 3 may flatten a single one)."""
    if value and isinstance(value[0], str):
        value = [value]
    return [[v[0], v[1], v[2]] for v in value]


def translate_topology(model_config: Dict[str, Any], class_name: str, keras_version: str,
                       backend: str = "tensorflow") -> Dict[str, Any]:
    """A Keras (3 or 2) model config -> the modelTopology of a tfjs layers model."""
    config = model_config
    if class_name in ("Functional", "Model"):
        layers = []
        for layer in config["layers"]:
            cls = layer["class_name"]
            lname = layer.get("name") or layer["config"].get("name")
            if cls in ("Sequential", "Functional", "Model"):
                raise _fail(lname, cls, "nested models are not converted; flatten the model first")
            entry = {"class_name": cls, "config": translate_layer(cls, layer["config"]), "name": lname,
                     "inbound_nodes": [_node_refs(n, lname, cls) for n in layer.get("inbound_nodes", [])]}
            layers.append(entry)
        out = {"name": config.get("name", "model"), "layers": layers,
               "input_layers": _endpoints(config["input_layers"]),
               "output_layers": _endpoints(config["output_layers"])}
        top_class = "Model"
    elif class_name == "Sequential":
        layers = []
        for layer in config["layers"]:
            cls = layer["class_name"]
            if cls in ("Sequential", "Functional", "Model"):
                raise _fail(layer["config"].get("name", "?"), cls, "nested models are not converted")
            layers.append({"class_name": cls, "config": translate_layer(cls, layer["config"])})
        if not layers:
            raise ConversionError("the Sequential model has no layers")
        first = layers[0]
        if first["class_name"] != "InputLayer" and "batch_input_shape" not in first["config"]:
            shape = config.get("build_input_shape")
            if shape is None:
                raise ConversionError("the Sequential model has no input shape: build it with keras.Input(...) "
                                      "as its first layer")
            first["config"]["batch_input_shape"] = list(shape)
        out = {"name": config.get("name", "sequential"), "layers": layers}
        top_class = "Sequential"
    else:
        raise ConversionError(f"model class {class_name!r} is not converted (Sequential and Functional are)")
    return {"class_name": top_class, "config": out, "keras_version": keras_version, "backend": backend}


# --------------------------------------------------------------------------------------------------
# Sources.

def keras_variables(model) -> List[Tuple[str, Any]]:
    """[(tfjs weight name, Keras variable)] of a Keras 3 model, in the order the web model stores
    them (layer by layer): '<layer>/<variable path below the layer>', renamed where tfjs-layers
    names a weight differently (DepthwiseConv2D's kernel is its depthwise_kernel)."""
    out = []
    for layer in model.layers:
        rename = _RENAME.get(type(layer).__name__, {})
        for w in layer.weights:
            parts = w.path.split("/")
            at = [i for i, part in enumerate(parts[:-1]) if part == layer.name]
            rel = parts[at[-1] + 1:] if at else [w.name]
            if len(rel) == 1:
                rel[0] = rename.get(rel[0], rel[0])
            out.append(("/".join([layer.name] + rel), w))
    return out


def _keras3_weights(model) -> List[Tuple[str, np.ndarray]]:
    return [(name, np.asarray(w.numpy())) for name, w in keras_variables(model)]


def _is_keras3(model) -> bool:
    import sys
    keras = sys.modules.get("keras")  # a Keras 3 model object means keras is already imported
    return keras is not None and keras.__version__.startswith("3.") and isinstance(model, keras.Model)


def _from_keras3(model) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    import keras
    kinds = [c.__name__ for c in type(model).__mro__]
    if "Sequential" in kinds:
        class_name = "Sequential"
    elif kinds[0] == "Functional":
        class_name = "Functional"
    else:
        raise ConversionError(f"{type(model).__name__}: a subclassed Keras model has no layer graph to convert; "
                              f"use a Sequential or Functional model")
    config = model.get_config()
    topology = translate_topology(config, class_name, KERAS2_VERSION, keras.config.backend())
    return topology, _keras3_weights(model), f"keras v{keras.__version__}"


def _weight_name(raw: str) -> str:
    return re.sub(r":\d+$", "", raw)


def _from_keras2_object(model) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    doc = json.loads(model.to_json())
    topology = translate_topology(doc["config"], doc["class_name"], doc.get("keras_version", KERAS2_VERSION))
    weights = [(_weight_name(w.name), np.asarray(w.numpy())) for layer in model.layers for w in layer.weights]
    return topology, weights, f"keras v{doc.get('keras_version', '?')}"


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _from_h5(path: Path) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    """A Keras 2 / tf_keras whole-model .h5: topology from the model_config attribute, weights from
    model_weights in the order of layer_names / weight_names (as tensorflowjs reads them)."""
    try:
        import h5py
    except ImportError:
        raise ConversionError('reading .h5 models needs h5py: pip install "qshard[h5]"') from None
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ConversionError(f"{path}: not an HDF5 file ({error})") from None
    with f:
        if "model_config" not in f.attrs:
            raise ConversionError(f"{path}: an HDF5 file without a model_config (weights only?): save the whole "
                                  f"model with model.save('model.h5')")
        try:
            doc = json.loads(_text(f.attrs["model_config"]))
        except ValueError as error:
            raise ConversionError(f"{path}: model_config is not JSON ({error})") from None
        version = _text(f.attrs.get("keras_version", KERAS2_VERSION))
        backend = _text(f.attrs.get("backend", "tensorflow"))
        try:
            topology = translate_topology(doc["config"], doc["class_name"], version, backend)
        except ConversionError as error:
            raise ConversionError(f"{path}: {error}") from None
        group = f["model_weights"] if "model_weights" in f else f
        weights = []
        for lname in group.attrs.get("layer_names", []):
            lgroup = group[_text(lname)]
            for wname in lgroup.attrs.get("weight_names", []):
                wname = _text(wname)
                weights.append((_weight_name(wname), np.asarray(lgroup[wname])))
    return topology, weights, f"keras v{version}"


def load_keras_file(path: Union[str, os.PathLike], missing_keras: str = "loading a .keras file needs Keras 3: "
                                                                         "pip install tensorflow"):
    """A Keras 3 model from a .keras file (compile=False), or a ConversionError naming the file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ConversionError(f"{path}: expected a Keras 3 .keras file")
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    try:
        import keras
    except ImportError:
        raise ConversionError(missing_keras) from None
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a bad file
        raise ConversionError(f"{path}: Keras could not load it: {type(error).__name__}: {error}") from None


def _load(source) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ConversionError(f"{path}: no such file")
        if path.suffix in (".h5", ".hdf5"):
            return _from_h5(path)
        if path.suffix != ".keras":
            raise ConversionError(f"{path}: expected a Keras 3 .keras file or a Keras 2 / tf_keras .h5 model")
        model = load_keras_file(path, 'converting .keras files needs Keras 3: pip install "qshard[keras]" '
                                      '(keras with a backend such as tensorflow)')
        try:
            return _from_keras3(model)
        except ConversionError as error:
            raise ConversionError(f"{path}: {error}") from None
    if _is_keras3(source):
        return _from_keras3(source)
    if hasattr(source, "to_json") and hasattr(source, "layers"):
        return _from_keras2_object(source)
    raise ConversionError(f"cannot convert a {type(source).__name__}: give a Keras model, a .keras or an .h5 file")


# --------------------------------------------------------------------------------------------------
# Writing.

def save_web_model(model, out_dir: Union[str, os.PathLike], *, uint8=None, uint16=None, float16=None, keep=None,
                   shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False, threads: Optional[int] = None,
                   progress=None, targets: Optional[Dict[str, str]] = None):
    """Write a Keras model (object, .keras or .h5 path) as a tfjs layers model into out_dir:
    model.json (Keras-2-style topology) + shards, weights quantized per the patterns (fnmatch over
    the tfjs weight names, e.g. 'dense/*'), or per `targets` (tfjs name -> dtype) when given.
    Returns a qshard.tfjs.QuantizeReport."""
    from .tfjs import QuantizeReport, write_weights
    check_shard_size(shard_size)
    topology, weights, generated_by = _load(model)
    names = [n for n, _ in weights]
    dup = first_duplicate(names)
    if dup is not None:
        raise ConversionError(f"two weights would both be named {dup!r} in the web model")
    if targets is not None:
        unknown = sorted(set(targets) - set(names))
        if unknown:
            raise ConversionError(f"targets name weights the model does not have: {', '.join(unknown[:5])}")
        report, _ = QuantizeReport.plan(names, out_dir, None, None, None, None)
        targets = {n: d for n, d in targets.items() if d != "float32"}
    else:
        report, targets = QuantizeReport.plan(names, out_dir, uint8, uint16, float16, keep)
    report.bytes_in = sum(a.nbytes for _, a in weights)
    for name, array in weights:
        dtype = "float32" if array.dtype.kind == "f" else str(array.dtype)
        if report.decide(name, dtype, targets.get(name)) is None:
            targets.pop(name, None)
    kept: list = []
    with atomic_folder(out_dir, force) as tmp:
        manifest = write_weights([weights], tmp, shard_size=shard_size, targets=targets, write_manifest=False,
                                 threads=threads, progress=progress, kept=kept)
        for k in kept:
            report.changed.pop(k.name, None)
        report.kept.extend(kept)
        report.bytes_out = sum(os.path.getsize(tmp / p) for g in manifest for p in g["paths"])
        doc = {"format": "layers-model", "generatedBy": generated_by, "convertedBy": f"qshard {__version__}",
               "modelTopology": topology, "weightsManifest": manifest}
        (tmp / mf.MODEL_NAME).write_bytes(mf.dumps(doc).encode())
    return report


convert = save_web_model
