"""Keras models from objects, .keras files and tf_keras .h5 files: topology, weights, version."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from qshard.errors import ConversionError
from qshard.formats.inputs import (MAX_JSON_BYTES, available_memory, check_memory, open_zip, parse_json, read_member,
                                   require_regular)
from qshard.formats.manifest import element_count
from qshard.formats.sources.h5 import check_dataset
from qshard.keras.expand import check_weight
from qshard.optional import require
from qshard.keras.rules import KERAS2_VERSION, WEIGHT_RENAMES
from qshard.keras.topology import translate_topology


def keras_variables(model) -> List[Tuple[str, Any]]:
    """[(tfjs weight name, Keras variable)] of a Keras 3 model, in the order the web model stores
    them (layer by layer): '<layer>/<variable path below the layer>', renamed where tfjs-layers
    names a weight differently (DepthwiseConv2D's kernel is its depthwise_kernel); variables tfjs
    has no place for (a Normalization's sample count) are left out."""
    out = []
    for layer in model.layers:
        rename = WEIGHT_RENAMES.get(type(layer).__name__, {})
        for w in layer.weights:
            parts = w.path.split("/")
            at = [i for i, part in enumerate(parts[:-1]) if part == layer.name]
            rel = parts[at[-1] + 1:] if at else [w.name]
            if len(rel) == 1 and rel[0] in rename:
                if rename[rel[0]] is None:
                    continue
                rel[0] = rename[rel[0]]
            out.append(("/".join([layer.name] + rel), w))
    return out


def keras3_weights(model) -> List[Tuple[str, np.ndarray]]:
    classes = {layer.name: type(layer).__name__ for layer in model.layers}
    out = [(name, np.asarray(w.numpy())) for name, w in keras_variables(model)]
    for name, array in out:
        check_weight(classes.get(name.split("/")[0], ""), name, array)
    return out


def _is_keras3(model) -> bool:
    import sys
    keras = sys.modules.get("keras")  # a Keras 3 model object means keras is already imported
    return keras is not None and keras.__version__.startswith("3.") and isinstance(model, keras.Model)


def _with_input_shapes(config: Dict[str, Any], model) -> Dict[str, Any]:
    """The config with each layer's input shape where Keras wrote none (weightless layers of a
    Sequential model): some rewrites need a channel count."""
    shapes = {}
    for layer in model.layers:
        try:
            shapes[layer.name] = tuple(layer.input.shape)
        except (AttributeError, ValueError):  # a layer called several times, or never
            continue
    for entry in config.get("layers", []):
        name = entry.get("name") or entry.get("config", {}).get("name")
        if "build_config" not in entry and name in shapes:
            entry["build_config"] = {"input_shape": shapes[name]}
    return config


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
    config = _with_input_shapes(model.get_config(), model)
    topology = translate_topology(config, class_name, KERAS2_VERSION, keras.config.backend(), keras2=False)
    return topology, keras3_weights(model), f"keras v{keras.__version__}"


def weight_name(raw: str) -> str:
    return re.sub(r":\d+$", "", raw)


def tfjs_weight_name(cls: str, name: str) -> Optional[str]:
    """A Keras 2 weight name ('layer/variance') as tfjs-layers names it, or None if not written."""
    layer, _, rest = name.rpartition("/")
    rename = WEIGHT_RENAMES.get(cls, {})
    if rest not in rename:
        return name
    return None if rename[rest] is None else f"{layer}/{rename[rest]}"


def _from_keras2_object(model) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    doc = json.loads(model.to_json())
    topology = translate_topology(doc["config"], doc["class_name"], doc.get("keras_version", KERAS2_VERSION))
    weights = []
    for layer in model.layers:
        for w in layer.weights:
            name = tfjs_weight_name(type(layer).__name__, weight_name(w.name))
            if name is not None:
                weights.append((name, np.asarray(w.numpy())))
                check_weight(type(layer).__name__, name, weights[-1][1])
    return topology, weights, f"keras v{doc.get('keras_version', '?')}"


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _from_h5(path: Path) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    """A Keras 2 / tf_keras whole-model .h5: topology from the model_config attribute, weights from
    model_weights in the order of layer_names / weight_names (as tensorflowjs reads them)."""
    h5py = require("h5py", "h5", f"{path}: reading .h5 models", ConversionError)
    require_regular(path, "HDF5 model", ConversionError)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise ConversionError(f"{path}: not an HDF5 file ({error})") from None
    with f:
        try:
            return _read_h5(path, f, h5py)
        except ConversionError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OSError, RuntimeError) as error:
            # The config and the weight lists are the file's to get wrong: a missing key, a list
            # where an object belongs, a layer the weights do not have.
            raise ConversionError(f"{path}: a malformed Keras .h5 model ({type(error).__name__}: {error})") from None


def _read_h5(path: Path, f, h5py) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    if "model_config" not in f.attrs:
        raise ConversionError(f"{path}: an HDF5 file without a model_config (weights only?): save the whole "
                              f"model with model.save('model.h5')")
    doc = parse_json(_text(f.attrs["model_config"]), f"{path}: model_config", ConversionError, "model_config")
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) or not isinstance(doc.get("class_name"), str):
        raise ConversionError(f"{path}: model_config must be an object with 'class_name' and 'config'")
    version = _text(f.attrs.get("keras_version", KERAS2_VERSION))
    backend = _text(f.attrs.get("backend", "tensorflow"))
    try:
        topology = translate_topology(doc["config"], doc["class_name"], version, backend)
    except ConversionError as error:
        raise ConversionError(f"{path}: {error}") from None
    group = f["model_weights"] if "model_weights" in f else f
    classes = {layer["config"].get("name"): layer["class_name"] for layer in doc["config"].get("layers", [])}
    weights = []
    for lname in group.attrs.get("layer_names", []):
        lgroup = _member(group, _text(lname), path, h5py.Group, h5py)
        for wname in lgroup.attrs.get("weight_names", []):
            wname = _text(wname)
            name = tfjs_weight_name(classes.get(_text(lname), ""), weight_name(wname))
            if name is None:
                continue
            d = _member(lgroup, wname, path, h5py.Dataset, h5py)
            where = f"{path}: weight {wname!r}"
            check_dataset(d, where, ConversionError)
            if element_count(d.shape) is None:
                raise ConversionError(f"{where}: shape {list(d.shape)} has more elements than any real tensor")
            check_memory(element_count(d.shape) * d.dtype.itemsize, where, ConversionError)
            array = np.asarray(d)
            check_weight(classes.get(_text(lname), ""), name, array)
            weights.append((name, array))
    return topology, weights, f"keras v{version}"


def _member(group, name: str, path: Path, kind, h5py):
    """group[name], which must be a `kind` stored in this file (an external link would open another file)."""
    link = group.get(name, getlink=True)
    if link is None:
        raise ConversionError(f"{path}: {group.name} lists {name!r}, which the file does not have")
    if isinstance(link, h5py.ExternalLink):
        raise ConversionError(f"{path}: {name!r} links to another file, which qshard does not open")
    obj = group[name]
    if not isinstance(obj, kind):
        raise ConversionError(f"{path}: {name!r} is not an HDF5 {kind.__name__.lower()}")
    return obj


def check_keras_file(path: Path) -> None:
    """What can be checked before Keras is imported and opens the file: a regular .keras file, a
    zip whose members inflate to what fits in memory (Keras reads the weights from the archive), with
    a config.json holding a JSON object."""
    if path.suffix != ".keras":
        raise ConversionError(f"{path}: expected a Keras 3 .keras file")
    if not path.exists():
        raise ConversionError(f"{path}: no such file")
    with open_zip(path, ".keras file", ConversionError, max_total=available_memory()) as archive:
        raw = read_member(archive, "config.json", f"{path}: the .keras file", ConversionError, MAX_JSON_BYTES)
    if not isinstance(parse_json(raw, f"{path}: config.json", ConversionError, "model config"), dict):
        raise ConversionError(f"{path}: config.json is not a JSON object (a Keras model config)")


def load_keras_file(path: Union[str, os.PathLike], extra: str = "keras", purpose: str = "loading a .keras file"):
    """A Keras 3 model from a .keras file (compile=False), or a ConversionError naming the file (or
    the missing module and the extra `extra` that brings it)."""
    path = Path(path)
    check_keras_file(path)
    keras = require("keras", extra, f"{path}: {purpose}", ConversionError)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a bad file
        raise ConversionError(f"{path}: Keras could not load it: {type(error).__name__}: {error}") from None


def layers_document(topology: Dict[str, Any], generated_by: str) -> Dict[str, Any]:
    """The model.json of a tfjs layers model with this topology, without its weightsManifest."""
    from qshard import __version__
    return {"format": "layers-model", "generatedBy": generated_by, "convertedBy": f"qshard {__version__}",
            "modelTopology": topology}


def load_model_parts(source) -> Tuple[Dict[str, Any], List[Tuple[str, np.ndarray]], str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ConversionError(f"{path}: no such file")
        if path.suffix in (".h5", ".hdf5"):
            return _from_h5(path)
        if path.suffix != ".keras":
            raise ConversionError(f"{path}: expected a Keras 3 .keras file or a Keras 2 / tf_keras .h5 model")
        model = load_keras_file(path, "keras", "converting a .keras file")
        try:
            return _from_keras3(model)
        except ConversionError as error:
            raise ConversionError(f"{path}: {error}") from None
    if _is_keras3(source):
        return _from_keras3(source)
    if hasattr(source, "to_json") and hasattr(source, "layers"):
        return _from_keras2_object(source)
    raise ConversionError(f"cannot convert a {type(source).__name__}: give a Keras model, a .keras or an .h5 file")
