"""What tfjs-layers 4.22 runs: every Keras layer option translated, checked, or refused by name.

Each rule was checked against tfjs-layers 4.22's own source (src/layers/*.ts) and by a test that
compares its predictions with Keras's; layers it has no class for but computes exactly as a short
chain of its own layers are rewritten in expand.py."""
from __future__ import annotations

from typing import Any, Dict

from qshard.errors import ConversionError

KERAS2_VERSION = "2.15.0"  # the topology dialect written (what tfjs-layers 4.22 reads)

# Keras activation name -> tfjs-layers name. Keras 3's hard_sigmoid is relu6(x + 3) / 6 while
# tfjs's hardSigmoid is Keras 2's 0.2 x + 0.5: not listed here, rewritten by expand.py where it
# acts on a layer's output.
ACTIVATIONS = {"linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "softmax": "softmax",
               "tanh": "tanh", "elu": "elu", "selu": "selu", "softplus": "softplus", "softsign": "softsign",
               "gelu": "gelu", "mish": "mish", "swish": "swish", "silu": "swish", "log_softmax": "logSoftmax"}

# Keras 2 (tf_keras) defines hard_sigmoid as clip(0.2 x + 0.5, 0, 1), as tfjs does.
KERAS2_ACTIVATIONS = dict(ACTIVATIONS, hard_sigmoid="hardSigmoid")

# The end of every refusal of a layer or option: tfjs-layers cannot express it, a graph model can.
GRAPH_HINT = "; `qshard convert --to graph` converts it to a graph model instead"

# Options that cannot change what a loaded model predicts: dropped from the translated config.
_INERT_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_INERT = {"trainable", "seed", "quantization_config"}

# Checked options that tfjs-layers also reads (the others are checked, then left out).
_EMIT_CHECKED = {"padding", "stateful", "sparse", "ragged", "axis", "interpolation", "alpha"}

# class -> {option: rule}. Rules: "keep" (copied as is), "activation", ("only", allowed values,
# why), ("rename", new name), "drop" (cannot affect inference; removed). Options not listed are
# errors unless inert.
_CONV = {"filters": "keep", "kernel_size": "keep", "strides": "keep", "padding": ("only", ("valid", "same"), ""),
         "data_format": "keep", "dilation_rate": "keep", "activation": "activation", "use_bias": "keep",
         "groups": ("only", (1,), "grouped convolution is not in tfjs-layers")}
_POOL = {"pool_size": "keep", "strides": "keep", "padding": ("only", ("valid", "same"), ""), "data_format": "keep"}
# keepdims=True is rewritten (expand.py) into the pooling and a Reshape.
_GLOBAL_POOL = {"data_format": "keep", "keepdims": ("only", (False,), "tfjs-layers has no keepdims")}
_NO_DILATION = ("only", (1, (1,), (1, 1)), "tfjs-layers' Conv2DTranspose ignores dilation_rate")
# Identity at inference in Keras and tfjs alike; their rates only matter in training.
_NOISE = {"rate": "keep", "stddev": "keep", "noise_shape": "drop"}
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
    "Add": {}, "Multiply": {}, "Average": {}, "Maximum": {}, "Minimum": {}, "Concatenate": {"axis": "keep"},
    "ZeroPadding2D": {"padding": "keep", "data_format": "keep"},
    "Cropping2D": {"cropping": "keep", "data_format": "keep"},
    # Keras repeats rows and columns; tfjs resizes with nearest neighbours (the same for integer
    # sizes). tfjs's bilinear resize has no half-pixel centres, Keras's has.
    "UpSampling2D": {"size": "keep", "data_format": "keep",
                     "interpolation": ("only", ("nearest",), "tfjs-layers resizes bilinearly without half-pixel "
                                       "centres (Keras uses them) and has no other interpolation")},
    "Conv2DTranspose": {"filters": "keep", "kernel_size": "keep", "strides": "keep",
                        "padding": ("only", ("valid", "same"), ""), "data_format": "keep",
                        "activation": "activation", "use_bias": "keep", "dilation_rate": _NO_DILATION,
                        "output_padding": ("only", (None,), "tfjs-layers' Conv2DTranspose has no output_padding"),
                        "groups": ("only", (1,), "grouped convolution is not in tfjs-layers")},
    "Rescaling": {"scale": "keep", "offset": "keep"},  # numbers or per-channel lists: both broadcast on the last axis
    "Permute": {"dims": "keep"}, "RepeatVector": {"n": "keep"},
    "LeakyReLU": {"negative_slope": ("rename", "alpha"), "alpha": "keep"},  # Keras 3 / Keras 2 name
    "PReLU": {"shared_axes": "keep"},
    "ELU": {"alpha": ("only", (1, 1.0), "tfjs-layers' ELU layer implements alpha=1 only")},
    "ThresholdedReLU": {"theta": "keep"},
    "Softmax": {"axis": ("only", (-1, (-1,)), "tfjs computes softmax over the last axis only")},
    "GaussianNoise": _NOISE, "GaussianDropout": _NOISE, "AlphaDropout": _NOISE, "SpatialDropout1D": _NOISE,
    "Embedding": {"input_dim": "keep", "output_dim": "keep", "mask_zero": "keep", "input_length": "keep",
                  "sparse": ("only", (False,), ""), "lora_rank": ("only", (None,), ""), "lora_alpha": "drop"},
    "LSTM": dict(_RNN, unit_forget_bias="keep"),
    "GRU": dict(_RNN, reset_after=("only", (False,), "tfjs-layers' GRU has no reset_after=True (Keras' default); "
                                   "build the GRU with reset_after=False")),
}
# Weight names: Keras variable -> the name tfjs-layers gives it (per layer class); None: not
# written (a Normalization becomes a BatchNormalization that reads no sample count).
WEIGHT_RENAMES = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"},
                  "Normalization": {"mean": "moving_mean", "variance": "moving_variance", "count": None}}


def refuse(layer: str, cls: str, problem: str, hint: str = "") -> ConversionError:
    return ConversionError(f"layer {layer!r} ({cls}): {problem}{hint}")


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
        raise refuse(layer, cls, f"dtype policy {value!r}: only float32 layers convert (tfjs computes in float32)")
    return {"int64": "int32"}.get(value, value)


def translate_layer(cls: str, config: Dict[str, Any], keras2: bool = False) -> Dict[str, Any]:
    """One layer's config (Keras 3 or 2 form) -> the Keras 2 form tfjs-layers reads, or an error."""
    name = config.get("name", "?")
    activations = KERAS2_ACTIVATIONS if keras2 else ACTIVATIONS
    if cls not in RULES:
        supported = ", ".join(sorted(RULES))
        raise refuse(name, cls, f"this layer class is not converted to tfjs-layers (supported: {supported})", GRAPH_HINT)
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
            raise refuse(name, cls, f"option {key}={value!r} is not converted (tfjs-layers may not compute it)",
                         GRAPH_HINT)
        if rule == "keep":
            out[key] = _plain(value)
        elif rule == "drop":
            continue
        elif rule == "activation":
            act = value.get("class_name") if isinstance(value, dict) else value
            if isinstance(act, str) and act.lower() in activations:
                out[key] = activations[act.lower()]
            else:
                raise refuse(name, cls, f"option {key}={act!r}: activation not in tfjs-layers "
                                        f"(supported: {', '.join(sorted(activations))})", GRAPH_HINT)
        elif rule[0] == "rename":
            out[rule[1]] = _plain(value)
        elif rule[0] == "only":
            if _plain(value) not in [_plain(allowed) for allowed in rule[1]]:
                why = f": {rule[2]}" if rule[2] else ""
                raise refuse(name, cls, f"option {key}={value!r} is not supported{why}", GRAPH_HINT)
            if key in _EMIT_CHECKED:
                out[key] = _plain(value)
    if cls == "InputLayer" and "batch_input_shape" not in out:
        raise refuse(name, cls, "no input shape")
    out.setdefault("dtype", "float32")
    return out
