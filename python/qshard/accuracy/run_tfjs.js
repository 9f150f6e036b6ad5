#!/usr/bin/env node
// qshard's tfjs worker: stock @tensorflow/tfjs runs web models for Python (qshard.accuracy.tfjs_runner).
//
//   node run_tfjs.js <node_modules folder> <backend: cpu | wasm>
//
// One process serves many requests, so tfjs starts once and each model loads once. Requests come
// on stdin, one JSON object per line; every reply is one stdout line starting with REPLY (tfjs and
// its backends print banners and warnings: console output goes to stderr, and Python ignores
// stdout lines without the prefix).
//   {"op": "load", "model": <model.json>, "shards": [<absolute shard paths, manifest order>]}
//       -> {"ok", "format", "inputs": [{key, name, shape, dtype}], "outputs": [{key, shape, dtype}]}
//   {"op": "predict", "model", "inputs": [{key, file, shape, dtype}], "out": <folder>, "repeats": n}
//       -> {"ok", "outputs": [{key, file, shape, dtype}], "seconds": [one per repeat], "async"}
//   {"op": "unload", "model"}, {"op": "quit"}
// Errors reply {"ok": false, "error": text}; the worker stays up for the next request.
// Tensors cross as raw little-endian files (float32, int32, bool as one byte), never as JSON numbers.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const {createRequire} = require('module');

const REPLY = '@@qshard ';
const writeReply = process.stdout.write.bind(process.stdout);
console.log = console.info = console.debug = (...args) => console.error(...args);

const [nodeModules, backend] = process.argv.slice(2);
const requireTfjs = createRequire(path.join(path.resolve(nodeModules), 'qshard-resolve.js'));
const tf = requireTfjs('@tensorflow/tfjs');
const ARRAYS = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};
const models = new Map();  // model.json path -> {model, format, async}

async function setUp() {
  if (os.endianness() !== 'LE') {
    throw new Error('tensor files are little-endian; this machine is big-endian');
  }
  if (backend === 'wasm') {
    const wasm = requireTfjs('@tensorflow/tfjs-backend-wasm');
    const dist = path.dirname(requireTfjs.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(dist + path.sep);
  }
  if (!(await tf.setBackend(backend))) {
    throw new Error(`tfjs could not start its ${backend} backend`);
  }
  await tf.ready();
}

function arrayBufferOf(buffer) {
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
}

function shapeOf(shape) {
  return shape == null ? null : shape.map((d) => (d == null || d < 0 ? -1 : d));
}

async function load(request) {
  const doc = JSON.parse(fs.readFileSync(request.model, 'utf8'));
  const weightSpecs = [].concat(...doc.weightsManifest.map((group) => group.weights));
  const artifacts = {
    modelTopology: doc.modelTopology,
    weightSpecs,
    weightData: arrayBufferOf(Buffer.concat(request.shards.map((p) => fs.readFileSync(p)))),
    format: doc.format, generatedBy: doc.generatedBy, convertedBy: doc.convertedBy,
  };
  for (const key of ['signature', 'modelInitializer', 'userDefinedMetadata', 'trainingConfig',
    'initializerSignature']) {
    if (doc[key] != null) artifacts[key] = doc[key];
  }
  const graph = doc.format === 'graph-model' ||
      (doc.format == null && doc.modelTopology != null && Array.isArray(doc.modelTopology.node));
  const handler = tf.io.fromMemory(artifacts);
  let entry;
  if (graph) {
    const model = await tf.loadGraphModel(handler);
    const outputs = model.outputs;
    entry = {
      model, format: 'graph-model', async: false,
      inputs: model.inputs.map((t, i) => ({key: model.inputNodes[i], name: t.name, shape: shapeOf(t.shape),
        dtype: t.dtype || 'float32'})),
      outputs: model.outputNodes.map((key, i) => ({key, shape: shapeOf(outputs[i].shape),
        dtype: outputs[i].dtype || null})),
    };
  } else {
    const model = await tf.loadLayersModel(handler, {strict: true});
    // A Sequential model leaves inputNames / outputNames empty: name by the layers then.
    const layerName = (names, t, i) => names[i] || (t.sourceLayer ? t.sourceLayer.name : t.name);
    entry = {
      model, format: 'layers-model', async: false,
      inputs: model.inputs.map((t, i) => ({key: layerName(model.inputNames, t, i), name: t.name, shape: shapeOf(t.shape),
        dtype: t.dtype})),
      outputs: model.outputs.map((t, i) => ({key: layerName(model.outputNames, t, i), shape: shapeOf(t.shape), dtype: t.dtype})),
    };
  }
  models.get(request.model)?.model.dispose();
  models.set(request.model, entry);
  return {format: entry.format, inputs: entry.inputs, outputs: entry.outputs, tfjs: tf.version.tfjs,
    backend: tf.getBackend()};
}

function readTensor(spec) {
  const Type = ARRAYS[spec.dtype];
  if (Type == null) throw new Error(`input ${spec.key}: dtype ${spec.dtype} is not float32, int32 or bool`);
  const values = new Type(arrayBufferOf(fs.readFileSync(spec.file)));
  return tf.tensor(values, spec.shape, spec.dtype);
}

async function run(entry, feed) {
  if (entry.format === 'layers-model') {
    const xs = entry.inputs.map((input) => feed[input.key]);
    const y = entry.model.predict(xs.length === 1 ? xs[0] : xs);
    return Array.isArray(y) ? y : [y];
  }
  const keys = entry.outputs.map((o) => o.key);
  if (!entry.async) {
    try {
      const y = entry.model.execute(feed, keys);
      return Array.isArray(y) ? y : [y];
    } catch (error) {
      // Graphs with control flow or dynamic shapes refuse execute(): use executeAsync from now on.
      if (!/executeAsync/.test(String(error && error.message))) throw error;
      entry.async = true;
    }
  }
  const y = await entry.model.executeAsync(feed, keys);
  return Array.isArray(y) ? y : [y];
}

async function predict(request) {
  const entry = models.get(request.model);
  if (entry == null) throw new Error(`${request.model} is not loaded`);
  const feed = {};
  for (const spec of request.inputs) feed[spec.key] = readTensor(spec);
  const seconds = [];
  let ys = null;
  let values = null;
  try {
    for (let r = 0; r < Math.max(1, request.repeats || 1); r++) {
      if (ys != null) tf.dispose(ys);
      const start = process.hrtime.bigint();
      ys = await run(entry, feed);
      values = await Promise.all(ys.map((y) => y.data()));  // reading the values back is part of a predict
      seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
    }
    const outputs = ys.map((y, i) => {
      if (ARRAYS[y.dtype] == null) throw new Error(`output ${entry.outputs[i].key} has dtype ${y.dtype}`);
      const file = path.join(request.out, `output${i}.bin`);
      const v = values[i];
      fs.writeFileSync(file, Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      return {key: entry.outputs[i].key, file, shape: y.shape, dtype: y.dtype};
    });
    return {outputs, seconds, async: entry.async};
  } finally {
    tf.dispose(Object.values(feed));
    if (ys != null) tf.dispose(ys);
  }
}

const OPS = {
  load,
  predict,
  async unload(request) {
    models.get(request.model)?.model.dispose();
    models.delete(request.model);
    return {};
  },
};

async function main() {
  let ready = null;
  try {
    await setUp();
    ready = {ok: true, tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version};
  } catch (error) {
    ready = {ok: false, error: String(error && error.stack ? error.stack : error)};
  }
  writeReply(REPLY + JSON.stringify(ready) + '\n');
  if (!ready.ok) process.exit(1);
  const lines = readline.createInterface({input: process.stdin, crlfDelay: Infinity});
  for await (const line of lines) {
    if (!line.trim()) continue;
    let reply;
    try {
      const request = JSON.parse(line);
      if (request.op === 'quit') break;
      const op = OPS[request.op];
      if (op == null) throw new Error(`unknown request ${request.op}`);
      reply = Object.assign({ok: true}, await op(request));
    } catch (error) {
      reply = {ok: false, error: String(error && error.message ? error.message : error)};
    }
    writeReply(REPLY + JSON.stringify(reply) + '\n');
  }
  for (const entry of models.values()) entry.model.dispose();
  process.exit(0);
}

main();
