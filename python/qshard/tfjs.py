"""TensorFlow.js web models: the public face of qshard.formats (read, write, re-quantize).

`quantize_model` re-quantizes a web model (or converts safetensors / npz / npy / h5 weights) into a
folder stock tfjs loads; `write_weights` / `read_weights` mirror tensorflowjs's functions.
"""
from qshard.formats.webmodel import (
           WebModel,
           read_weights,
           write_weights,
)
from qshard.formats.writer import (
           DEFAULT_SHARD_SIZE,
           Kept,
           QuantizeReport,
           atomic_folder,
           quantize_model,
)

__all__ = ["DEFAULT_SHARD_SIZE", "Kept", "QuantizeReport", "WebModel", "atomic_folder", "quantize_model",
           "read_weights", "write_weights"]
