"""Keras 3 and Keras 2 model configs translated to the Keras 2 topology tfjs-layers reads."""
from __future__ import annotations

from typing import Any, Dict, List

from qshard.errors import ConversionError
from qshard.keras.rules import refuse, translate_layer


def _node_refs(node, layer: str, cls: str) -> List[list]:
    """A Keras 3 inbound node ({'args', 'kwargs'}) or a Keras 2 one (a list) -> Keras 2 refs."""
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        return [[r[0], r[1], r[2], r[3] if len(r) > 3 else {}] for r in node]
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None and k != "training"}
    if kwargs:
        raise refuse(layer, cls, f"called with arguments {sorted(kwargs)}, which tfjs-layers topologies cannot carry")
    refs = []

    def collect(arg):
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            history = arg["config"]["keras_history"]
            refs.append([history[0], history[1], history[2], {}])
        elif isinstance(arg, (list, tuple)):
            for a in arg:
                collect(a)
        else:
            raise refuse(layer, cls, f"called with a non-tensor argument {arg!r}")
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
                raise refuse(lname, cls, "nested models are not converted; flatten the model first")
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
                raise refuse(layer["config"].get("name", "?"), cls, "nested models are not converted")
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
