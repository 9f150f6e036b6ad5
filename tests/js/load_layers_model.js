#!/usr/bin/env node
// Load a TensorFlow.js layers model with the stock JavaScript client and run it.
//
//   node load_layers_model.js <model-folder> <input.json> <out.json> [<model-folder> <input.json> <out.json> ...]
//
// The model is loaded by tf.loadLayersModel through a small IOHandler that does what tfjs's own
// http / file handlers do: it parses <model-folder>/model.json and returns its modelTopology,
// the weight specs of every group, and all shard files of all groups concatenated in manifest
// order as one ArrayBuffer. Loading is strict: every weight of the model must be provided, and
// every provided weight must belong to the model.
//
// <input.json> is {"shape": [...], "hex": little-endian bytes, "dtype": "float32" (default) or "int32"}. <out.json> receives
// {"tfjs", "backend", "shape", "dtype", "hex"} of model.predict(input), float32 bits exact, plus
// "weights": the names and shapes of the model's weights as tfjs-layers built them.
'use strict';

const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const {readArtifacts, toArrayBuffer, useCpuBackend} = require('./common');

function folderHandler(folder) {
  return {load: async () => readArtifacts(folder)};
}

function readInput(file) {
  const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
  const bytes = Buffer.from(spec.hex, 'hex');
  const dtype = spec.dtype || 'float32';
  const values = dtype === 'int32' ? new Int32Array(toArrayBuffer(bytes)) : new Float32Array(toArrayBuffer(bytes));
  return tf.tensor(values, spec.shape, dtype);
}

async function run(folder, inputFile, outFile) {
  const model = await tf.loadLayersModel(folderHandler(folder), {strict: true});
  const x = readInput(inputFile);
  const y = model.predict(x);
  if (Array.isArray(y)) {
    throw new Error(`${folder}: the model has several outputs; this script handles one`);
  }
  const values = await y.data();
  const result = {
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
    shape: y.shape,
    dtype: y.dtype,
    hex: Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex'),
    weights: model.weights.map((w) => ({name: w.originalName, shape: w.shape})),
  };
  fs.writeFileSync(outFile, JSON.stringify(result));
  tf.dispose([x, y]);
  model.dispose();
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length === 0 || args.length % 3 !== 0) {
    console.error('usage: node load_layers_model.js <model-folder> <input.json> <out.json> [...]');
    process.exit(2);
  }
  await useCpuBackend(tf);
  for (let i = 0; i < args.length; i += 3) {
    await run(args[i], args[i + 1], args[i + 2]);
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
