"""Fuzz the web-model readers (manifest parser, shard reader, dequantization, verify) with atheris.

Any exception other than qshard's own user errors (QshardError) is a finding. Run by CI for a
bounded time; longer by hand:
    python tests/fuzz/fuzz_web_model.py -max_total_time=600
"""
import json
import math
import os
import shutil
import tempfile

import atheris
from harness import fuzz, refusing

with atheris.instrument_imports():
    from qshard.formats import summary
    from qshard import tfjs

WORK = tempfile.mkdtemp(prefix="qshard-fuzz-")
DTYPES = ["float32"] * 6 + ["int32", "bool", "string", "complex64", "uint8", "float64", ""]
QDTYPES = ["uint8", "uint16", "float16"] * 3 + ["int4", None]
SHARDS = ["group1-shard1of1.bin", "group1-shard2of2.bin", "a.bin"]
PATHS = SHARDS * 4 + ["../x.bin", "/etc/hostname", "http://h/x.bin", "sub/../a.bin", "", "missing.bin", "link.bin",
                      "%2e%2e/a.bin", "a.bin?v=1", "sub\\a.bin", "a.bin "]
NUMBERS = [0.5, -1.5, 1.0, 0.01] * 3 + [0.0, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, 3, True, "1", None]


def weight(fdp):
    rare = lambda: fdp.ConsumeIntInRange(0, 15) == 0  # noqa: E731
    w = {"name": f"w{fdp.ConsumeIntInRange(0, 5)}" if not rare() else fdp.PickValueInList(["\udcff", "", "w0"]),
         "shape": [fdp.ConsumeIntInRange(-2 if rare() else 0, 70) for _ in range(fdp.ConsumeIntInRange(0, 3))],
         "dtype": fdp.PickValueInList(DTYPES)}
    if fdp.ConsumeIntInRange(0, 3) == 0:
        q = {"dtype": fdp.PickValueInList(QDTYPES)}
        if not rare():
            q["min"] = fdp.PickValueInList(NUMBERS)
            q["scale"] = fdp.PickValueInList(NUMBERS)
        if fdp.ConsumeBool():
            q["original_dtype"] = fdp.PickValueInList(["float32", "int32", "float16"])
        w["quantization"] = q
    if rare():
        del w[fdp.PickValueInList(["name", "shape", "dtype"])]
    if rare():
        w["quantization"] = None  # tfjs reads the key's presence as "quantized" and fails
    return w


def build(fdp):
    """A model folder: structured most of the time, raw bytes sometimes."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.mkdir(WORK)
    if fdp.ConsumeIntInRange(0, 9) == 0:
        text = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2048))
    else:
        groups = [{"paths": [fdp.PickValueInList(PATHS) for _ in range(fdp.ConsumeIntInRange(0, 3))],
                   "weights": [weight(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]}
                  for _ in range(fdp.ConsumeIntInRange(0, 2))]
        doc = groups if fdp.ConsumeBool() else {"format": "graph-model", "weightsManifest": groups}
        text = json.dumps(doc).encode()
    name = "weights_manifest.json" if fdp.ConsumeBool() else "model.json"
    with open(os.path.join(WORK, name), "wb") as f:
        f.write(text)
    for path in SHARDS:
        if fdp.ConsumeIntInRange(0, 4):
            with open(os.path.join(WORK, path), "wb") as f:
                f.write(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600)))
    if fdp.ConsumeBool():
        os.symlink("/etc/hostname", os.path.join(WORK, "link.bin"))


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    build(fdp)
    summary.verify(WORK)  # must report, never raise
    refusing(read_every_weight)


def read_every_weight() -> None:
    model = tfjs.WebModel(WORK)
    for spec in model.specs:
        model.values(spec.name)
        model.stored(spec.name)


if __name__ == "__main__":
    fuzz(one_input, WORK)
