"""Tiny tfjs graph models written on the spot for the accuracy tests (a GraphDef in model.json's JSON
form, Const nodes fed by the weights manifest), with their outputs computable in numpy."""
import json
from pathlib import Path

import numpy as np

from qshard.tfjs import write_weights

DT = {np.dtype(np.float32): "DT_FLOAT", np.dtype(np.int32): "DT_INT32", np.dtype(np.bool_): "DT_BOOL"}
F32 = {"type": "DT_FLOAT"}


def shape_attr(dims):
    return {"dim": [{"size": str(d)} for d in dims]}


def placeholder(name, dims, dtype="DT_FLOAT"):
    return {"name": name, "op": "Placeholder", "attr": {"dtype": {"type": dtype}, "shape": {"shape": shape_attr(dims)}}}


def const(name, array):
    dtype = DT[np.asarray(array).dtype]
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": dtype},
                                                  "value": {"tensor": {"dtype": dtype,
                                                                       "tensorShape": shape_attr(np.shape(array))}}}}


def op(name, kind, inputs, **attr):
    return {"name": name, "op": kind, "input": list(inputs), "attr": attr}


def matmul(name, a, b):
    return op(name, "MatMul", [a, b], T=F32, transpose_a={"b": False}, transpose_b={"b": False})


def bias_add(name, x, b):
    return op(name, "BiasAdd", [x, b], T=F32, data_format={"s": "TkhXQw=="})  # base64 of "NHWC"


def signature_entry(node, dims, dtype="DT_FLOAT"):
    return {"name": f"{node}:0", "dtype": dtype, "tensorShape": shape_attr(dims)}


def write_graph(folder, nodes, weights, signature=None):
    """model.json + shards of a graph model; weights [(name, array)] feed the Const nodes of those names."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    consts = [const(name, array) for name, array in weights]
    manifest = write_weights([[(n, np.asarray(a)) for n, a in weights]], folder, write_manifest=False)
    doc = {"format": "graph-model", "generatedBy": "qshard tests", "convertedBy": "qshard tests",
           "modelTopology": {"node": consts + list(nodes), "library": {}, "versions": {"producer": 1482}},
           "weightsManifest": manifest}
    if signature:
        doc["signature"] = signature
    (folder / "model.json").write_text(json.dumps(doc))
    return folder
