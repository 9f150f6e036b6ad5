"""A web model whose uint8 form is ruined by one outlier weight (for report and browser tests)."""
import json

import numpy as np

from qshard import example, tfjs

OUTLIER = "dense_1/kernel"


def outlier_model(folder):
    """The example MLP with one huge weight in dense_1/kernel: uint8 ruins that tensor only."""
    w = dict(example.weights())
    w[OUTLIER] = w[OUTLIER].copy()
    w[OUTLIER][3, 5] = 60.0
    groups = [list(w.items()) + [("step", np.array([7], np.int32))]]
    folder.mkdir(parents=True)
    manifest = tfjs.write_weights(groups, folder, write_manifest=False)
    doc = {"format": "layers-model", "modelTopology": example.layers_topology(), "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(doc))
    return w
