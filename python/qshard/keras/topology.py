"""Keras 3 and Keras 2 model configs translated to the Keras 2 topology tfjs-layers reads."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from qshard.errors import ConversionError
from qshard.keras.expand import ALL, Arg, Piece, expand_layer
from qshard.keras.rules import refuse, translate_layer

_MODELS = ("Sequential", "Functional", "Model")


def _check_training(kwargs, layer: str, cls: str) -> None:
    if kwargs.get("training"):
        raise refuse(layer, cls, "called with training=True; tfjs-layers runs every layer in inference mode")


def _node_args(node, layer: str, cls: str) -> List[Arg]:
    """A Keras 3 inbound node ({'args', 'kwargs'}) or a Keras 2 one (a list) -> its arguments."""
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        for r in node:
            _check_training(r[3] if len(r) > 3 else {}, layer, cls)
        return [Arg((r[0], r[1], r[2])) for r in node]
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
    _check_training(kwargs, layer, cls)
    kwargs.pop("training", None)
    if kwargs:
        raise refuse(layer, cls, f"called with arguments {sorted(kwargs)}, which tfjs-layers topologies cannot carry")
    args: List[Arg] = []

    def collect(arg):
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            history, config = arg["config"]["keras_history"], arg["config"]
            shape = config.get("shape")
            args.append(Arg((history[0], history[1], history[2]), shape=None if shape is None else tuple(shape),
                            dtype=config.get("dtype")))
        elif isinstance(arg, (list, tuple)):
            for a in arg:
                collect(a)
        else:
            args.append(Arg(None, value=arg))
    collect(node.get("args", []))
    return args


def _endpoints(value) -> List[list]:
    """input_layers / output_layers: [[name, node, tensor], ...] (Keras 3 may flatten a single one)."""
    if value and isinstance(value[0], str):
        value = [value]
    return [[v[0], v[1], v[2]] for v in value]


def _layer_name(layer: Dict[str, Any]) -> str:
    return layer.get("name") or layer["config"].get("name", "?")


def _pieces(layer: Dict[str, Any], nodes: List[List[Arg]], keras2: bool) -> List[Piece]:
    cls, name = layer["class_name"], _layer_name(layer)
    if cls in _MODELS:
        raise refuse(name, cls, "nested models are not converted; flatten the model first")
    shape = (layer.get("build_config") or {}).get("input_shape")  # Keras 3 writes it
    if shape is None and nodes and nodes[0]:
        shape = nodes[0][0].shape
    return expand_layer(cls, layer.get("module") or "", dict(layer["config"], name=name), nodes, keras2,
                        None if shape is None else tuple(shape))


def _inbound(piece: Piece, names: List[str], args: List[Arg], j: int, redirect: Dict[str, str],
             layer: str, cls: str) -> List[list]:
    """The refs of one call of a piece: the layer's own arguments (redirected to the last piece of
    an expanded layer) or an earlier piece of the same layer."""
    def outer(arg: Arg) -> list:
        if arg.ref is None:
            raise refuse(layer, cls, f"called with a non-tensor argument {arg.value!r}")
        return [redirect.get(arg.ref[0], arg.ref[0]), arg.ref[1], arg.ref[2], {}]
    refs = []
    for source in piece.inputs:
        if source == ALL:
            refs.extend(outer(a) for a in args)
        elif source[0] == "arg":
            refs.append(outer(args[source[1]]))
        else:
            refs.append([names[source[1]], j, 0, {}])
    return refs


def _functional(config: Dict[str, Any], keras2: bool) -> Dict[str, Any]:
    expanded, redirect = [], {}
    for layer in config["layers"]:
        name, cls = _layer_name(layer), layer["class_name"]
        nodes = [_node_args(n, name, cls) for n in layer.get("inbound_nodes", [])]
        pieces = _pieces(layer, nodes, keras2)
        if len(pieces) > 1:
            redirect[name] = pieces[-1].config["name"]
        expanded.append((name, cls, nodes, pieces))
    layers = []
    for name, cls, nodes, pieces in expanded:
        names = [p.config["name"] for p in pieces]
        for piece in pieces:
            layers.append({"class_name": piece.cls, "config": translate_layer(piece.cls, piece.config, keras2),
                           "name": piece.config["name"],
                           "inbound_nodes": [_inbound(piece, names, args, j, redirect, name, cls)
                                             for j, args in enumerate(nodes)]})
    outputs = [[redirect.get(n, n), i, t] for n, i, t in _endpoints(config["output_layers"])]
    return {"name": config.get("name", "model"), "layers": layers,
            "input_layers": _endpoints(config["input_layers"]), "output_layers": outputs}


def _sequential_as_functional(config: Dict[str, Any]) -> Dict[str, Any]:
    """A Sequential config as the Functional one it stands for (an InputLayer added if it has none)."""
    layers = [dict(layer) for layer in config["layers"]]
    first = layers[0]
    if first["class_name"] != "InputLayer":
        conf = dict(first["config"])
        shape = conf.pop("batch_input_shape", None) or conf.pop("batch_shape", None) or config["build_input_shape"]
        layers[0] = dict(first, config=conf)
        layers.insert(0, {"class_name": "InputLayer", "config": {
            "name": f"{_layer_name(first)}_input", "batch_input_shape": list(shape), "dtype": conf.get("dtype")}})
    names = [_layer_name(layer) for layer in layers]
    for k, layer in enumerate(layers):
        layer["name"] = names[k]
        layer["inbound_nodes"] = [[[names[k - 1], 0, 0, {}]]] if k else []
    return {"name": config.get("name", "sequential"), "layers": layers,
            "input_layers": [[names[0], 0, 0]], "output_layers": [[names[-1], 0, 0]]}


def _sequential(config: Dict[str, Any], keras2: bool) -> Dict[str, Any]:
    """A Sequential topology, or a Functional one when a layer expands into several."""
    if not config["layers"]:
        raise ConversionError("the Sequential model has no layers")
    first = config["layers"][0]
    if (first["class_name"] != "InputLayer" and "batch_input_shape" not in first["config"]
            and "batch_shape" not in first["config"] and config.get("build_input_shape") is None):
        raise ConversionError("the Sequential model has no input shape: build it with keras.Input(...) "
                              "as its first layer")
    chain = [_pieces(layer, [[Arg(("previous", 0, 0))]], keras2) for layer in config["layers"]]
    if any(len(pieces) > 1 for pieces in chain):
        return _functional(_sequential_as_functional(config), keras2)
    layers = [{"class_name": p.cls, "config": translate_layer(p.cls, p.config, keras2)} for [p] in chain]
    if layers[0]["class_name"] != "InputLayer" and "batch_input_shape" not in layers[0]["config"]:
        layers[0]["config"]["batch_input_shape"] = list(config["build_input_shape"])
    return {"name": config.get("name", "sequential"), "layers": layers}


def translate_topology(model_config: Dict[str, Any], class_name: str, keras_version: str,
                       backend: str = "tensorflow", keras2: Optional[bool] = None) -> Dict[str, Any]:
    """A Keras (3 or 2) model config -> the modelTopology of a tfjs layers model (keras2: whether
    the config is Keras 2's; by default, from keras_version)."""
    if keras2 is None:
        keras2 = not keras_version.startswith("3.")
    if class_name in ("Functional", "Model"):
        out, top_class = _functional(model_config, keras2), "Model"
    elif class_name == "Sequential":
        out = _sequential(model_config, keras2)
        top_class = "Sequential" if "input_layers" not in out else "Model"
    else:
        raise ConversionError(f"model class {class_name!r} is not converted (Sequential and Functional are)")
    return {"class_name": top_class, "config": out, "keras_version": keras_version, "backend": backend}
