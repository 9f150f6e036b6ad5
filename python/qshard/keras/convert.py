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

import os
from typing import Dict, Iterable, Optional, Union

from qshard.errors import ConversionError
from qshard.formats.outputs import check_new_folder
from qshard.formats.writer import DEFAULT_SHARD_SIZE, check_shard_size, first_duplicate
from qshard.keras.load import layers_document, load_model_parts


def save_web_model(model, out_dir: Union[str, os.PathLike], *, uint8=None, uint16=None, float16=None, keep=None,
                   shard_size: int = DEFAULT_SHARD_SIZE, force: bool = False, threads: Optional[int] = None,
                   progress=None, targets: Optional[Dict[str, str]] = None, allow_unmatched: bool = False,
                   inputs: Iterable = ()):
    """Write a Keras model (object, .keras or .h5 path) as a tfjs layers model into out_dir:
    model.json (Keras-2-style topology) + shards, weights quantized per the patterns (fnmatch over
    the tfjs weight names, e.g. 'dense/*'; one that matches nothing is an error unless
    allow_unmatched), or per `targets` (tfjs name -> dtype) when given. `inputs`: files the output
    must not overwrite besides a model given by path (data, say). Returns a qshard.tfjs.QuantizeReport."""
    from qshard.formats.webmodel import QuantizeReport, write_model
    check_shard_size(shard_size)
    sources = [*inputs, model] if isinstance(model, (str, os.PathLike)) else list(inputs)
    check_new_folder(out_dir, force, sources)  # before the model is loaded, which may take long
    topology, weights, generated_by = load_model_parts(model)
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
        source = str(model) if isinstance(model, (str, os.PathLike)) else "the Keras model"
        report, targets = QuantizeReport.plan(names, out_dir, uint8, uint16, float16, keep, source, allow_unmatched)
    return write_model(layers_document(topology, generated_by), weights, out_dir, report, targets, shard_size=shard_size, force=force,
                       threads=threads, progress=progress, inputs=sources)


convert = save_web_model
