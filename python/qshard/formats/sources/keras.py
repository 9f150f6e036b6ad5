"""Keras models as a source: a Keras 3 .keras file, or (with --from keras) a tf_keras / Keras 2
whole-model .h5. The tensors are the weights as tfjs-layers names them, in the order a layers model
stores them, and the output is a layers model (model.json with the translated topology), the same
bytes as `qshard convert`. Keras loads every weight into memory, so this source holds them whole.
(A Keras 3 .weights.h5 file has no topology to name its weights by: the h5 kind reads it.)"""
from __future__ import annotations

from pathlib import Path

from qshard.formats import manifest as mf
from qshard.formats.sources import Source, Tensor, array_reader, check_tensor, has_suffix, register


def open_keras(path: Path) -> Source:
    """A .keras or whole-model .h5 file as a source of its weights (needs keras / h5py)."""
    from qshard.keras.load import layers_document, load_model_parts
    topology, weights, generated_by = load_model_parts(path)
    tensors = []
    for name, array in weights:
        check_tensor(f"{path}: weight {name!r}", array.shape, array.dtype)
        tensors.append(Tensor(name, tuple(array.shape), array.dtype, array_reader(array)))
    document = layers_document(topology, generated_by)
    return Source(path, "keras", tensors,
                  document=lambda written: dict(document, weightsManifest=mf.dump_manifest(written)),
                  document_name=mf.MODEL_NAME)


register("keras", open_keras, lambda p: has_suffix(p, ".keras"),
         "Keras .keras (--from keras for a tf_keras whole-model .h5)")
