"""Helpers of the graph-model tests (tests/graph): stock tfjs 4.22 in Node running converted graph
models (tests/js/predict_graph.js), TensorFlow itself running a converted model.json on the weights
as qshard stored them (the reference for quantized variants), and the comparisons."""
import json
import subprocess
from pathlib import Path

import numpy as np

from qshard import tfjs
from support.node import JS_DIR

NODE_TIMEOUT = 600
# Relative to the largest output magnitude: float32 differences between TensorFlow's and tfjs's
# kernels (summation order, folded batch norms) over up to a few hundred layers.
TOLERANCE = 1e-4


def tfjs_predict(node, work: Path, runs):
    """Run converted models in stock tfjs (Node, cpu backend). runs: [(folder, {input key: array},
    mode)]; returns, per run, [(output name, array)] in tfjs's output order. One node process for
    all runs; if it fails, each run again alone so the error names the model that caused it."""
    specs = []
    for i, (folder, feeds, mode) in enumerate(runs):
        inputs = []
        for j, (key, array) in enumerate(feeds.items()):
            array = np.ascontiguousarray(array)
            dtype = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32"}[array.dtype]
            file = work / f"run{i}_input{j}.bin"
            array.astype(array.dtype.newbyteorder("<")).tofile(file)
            inputs.append({"name": key, "file": str(file), "shape": list(array.shape), "dtype": dtype})
        specs.append({"model": str(folder), "mode": mode, "inputs": inputs, "out": str(work / f"run{i}_out")})

    def call(chosen):
        file = work / f"runs_{len(chosen)}_{chosen[0]['out'].rsplit('run', 1)[1]}.json"
        file.write_text(json.dumps(chosen))
        done = subprocess.run([node, str(JS_DIR / "predict_graph.js"), str(file)], cwd=JS_DIR,
                              capture_output=True, text=True, timeout=NODE_TIMEOUT)
        return "" if done.returncode == 0 else done.stderr.strip()[-3000:]

    error = call(specs)
    if error:
        for spec in specs:
            one = call([spec])
            assert not one, f"tfjs could not run {spec['model']} ({spec['mode']}):\n{one}"
        raise AssertionError(f"tfjs failed on the batch but not on any run alone:\n{error}")
    results = []
    for spec in specs:
        result = json.loads((Path(spec["out"]) / "result.json").read_text())
        assert result["tfjs"] == "4.22.0" and result["backend"] == "cpu"
        dtypes = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}
        results.append([(o["name"], np.fromfile(o["file"], dtypes[o["dtype"]]).reshape(o["shape"]))
                        for o in result["outputs"]])
    return results


def assert_close(what, got, want, tolerance=TOLERANCE):
    """got is want within tolerance x the output scale (max |want|), which must be non-trivial."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    scale = float(np.abs(want).max())
    assert np.isfinite(scale) and scale > 1e-3, f"{what}: degenerate reference output (scale {scale})"
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= tolerance * scale, (f"{what}: max |difference| {err:.3g} exceeds {tolerance:g} of the output "
                                      f"scale {scale:.3g} ({err / scale:.3g} relative)")
    return err / scale


def unfuse(graph_def):
    """The tfjs-only fused nodes back as the TensorFlow ops they stand for (contraction, BiasAdd,
    activation), so TensorFlow can run the graph."""
    plain = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedMatMul": "MatMul"}
    for node in list(graph_def.node):
        if node.op not in plain:
            continue
        fused = [s.decode() for s in node.attr["fused_ops"].list.s]
        alpha = node.attr["leakyrelu_alpha"].f if "leakyrelu_alpha" in node.attr else None
        inputs, name = list(node.input), node.name
        contraction = graph_def.node.add()
        contraction.CopyFrom(node)
        contraction.name = node.name + "/unfused"
        contraction.op = plain[node.op]
        del contraction.input[2:]
        for key in ("fused_ops", "num_args", "epsilon", "leakyrelu_alpha"):
            if key in contraction.attr:
                del contraction.attr[key]
        last = contraction.name
        steps = [("BiasAdd", [last, inputs[2]])] if fused[0] == "BiasAdd" else []
        if len(fused) > 1:
            steps.append((fused[1], None))
        node.Clear()
        for k, (op, step_inputs) in enumerate(steps):
            target = node if k == len(steps) - 1 else graph_def.node.add()
            target.name = name if target is node else f"{contraction.name}/bias"
            target.op = op
            target.input.extend(step_inputs or [last])
            target.attr["T"].type = 1
            if op == "LeakyRelu":
                target.attr["alpha"].f = alpha
            last = target.name
        assert steps, "a fused node with neither bias nor activation"


def tf_run_web_model(tf, folder, feeds):
    """TensorFlow running model.json's graph with the weights as qshard stored them (dequantized
    exactly as tfjs decodes them); returns {output key: array}."""
    from google.protobuf.json_format import ParseDict
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util
    doc = json.loads((Path(folder) / "model.json").read_text())
    graph_def = ParseDict(doc["modelTopology"], graph_pb2.GraphDef())
    weights = tfjs.read_weights(folder)
    for node in graph_def.node:
        if node.op == "Const":
            value = np.asarray(weights[node.name])
            dtype = tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value.astype(dtype), shape=value.shape))
    unfuse(graph_def)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    signature = doc["signature"]
    fetches = {key: graph.get_tensor_by_name(info["name"]) for key, info in signature["outputs"].items()}
    feed = {graph.get_tensor_by_name(signature["inputs"][k]["name"]): v for k, v in feeds.items()}
    # TensorFlow's own graph rewrites at run time (remapper fusions into oneDNN kernels) change
    # results by up to ~3e-4 on some weights: run the graph as written.
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        return session.run(fetches, feed)


VARIANTS = {"float32": {}, "uint8": {"uint8": "*"}, "float16": {"float16": "*"}}


class Case:
    """A model to convert: its source (object or path), inputs by signature key, TensorFlow's own
    outputs by signature key, and options for convert_to_graph_model."""

    def __init__(self, src, feeds, want, **options):
        self.src, self.feeds, self.want, self.options = src, feeds, want, options
        self.folders = {}


def convert_and_predict(cases, root: Path, node, variants=VARIANTS, mode="predict", requantize=False):
    """Convert every case in every variant (its dtype flags) and run them all in tfjs; returns
    {case name: {variant: {output name: array}}}. With requantize, the quantized variants are made
    from the float32 conversion by qshard.tfjs.quantize_model (the same bytes, as test_ops checks)."""
    from qshard.graph import convert_to_graph_model
    runs = []
    for name, case in cases.items():
        for variant, flags in variants.items():
            case.folders[variant] = root / f"{name}-{variant}"
            if requantize and flags:
                tfjs.quantize_model(case.folders["float32"], case.folders[variant], **flags)
            else:
                convert_to_graph_model(case.src, case.folders[variant], **flags, **case.options)
            runs.append((case.folders[variant], case.feeds, mode))
    work = root / "node"
    work.mkdir()
    outputs = iter(tfjs_predict(node, work, runs))
    return {name: {variant: dict(next(outputs)) for variant in variants} for name in cases}


def check_float32(name, case, got):
    """tfjs's float32 outputs are TensorFlow's, by name."""
    assert sorted(got) == sorted(case.want), f"{name}: tfjs returned {sorted(got)}, TensorFlow {sorted(case.want)}"
    for key, want in case.want.items():
        assert_close(f"{name} float32 {key}", got[key], want)


def check_quantized(tf, name, variant, case, got, float_got):
    """A quantized variant stores its weights as asked, and tfjs's outputs are TensorFlow's on the
    written graph with the weights as qshard stored them (what quantization implies, no more)."""
    stored = {s.stored_dtype for s in tfjs.WebModel(case.folders[variant]).specs}
    assert variant in stored, f"{name} {variant}: weights stored as {stored}"
    want = tf_run_web_model(tf, case.folders[variant], case.feeds)
    changed = False
    for key in case.want:
        assert_close(f"{name} {variant} {key}", got[key], want[key])
        changed |= bool(np.abs(got[key] - float_got[key]).max() > 0)
    assert changed, f"{name} {variant}: quantization changed no output; the comparison would be vacuous"
