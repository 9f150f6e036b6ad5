#!/usr/bin/env node
// Load tfjs graph models with the stock JavaScript client (tf.loadGraphModel through
// tf.io.fromMemory) and run them on inputs given as raw little-endian files.
//
//   node predict_graph.js <runs.json>
//
// <runs.json> is a list of runs: {"model": folder, "mode": "predict" | "executeAsync",
// "inputs": [{"name", "file", "shape", "dtype": "float32" | "int32"}], "out": folder}.
// Inputs are passed by name (the signature's input keys). Each output is written to
// <out>/output_<i>.bin as its raw little-endian values, and <out>/result.json lists
// {"tfjs", "backend", "inputNodes", "outputNodes", "outputs": [{"name", "shape", "dtype", "file"}]}
// in the order tfjs returned them (by name when the model returns a named map).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {readArtifacts, toArrayBuffer, useCpuBackend} = require('./common');

function readInput(spec) {
  const bytes = toArrayBuffer(fs.readFileSync(spec.file));
  const dtype = spec.dtype || 'float32';
  const values = dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
  return tf.tensor(values, spec.shape, dtype);
}

async function run(spec) {
  const model = await tf.loadGraphModel(tf.io.fromMemory(readArtifacts(spec.model)));
  const feeds = {};
  for (const input of spec.inputs) {
    feeds[input.name] = readInput(input);
  }
  const mode = spec.mode || 'predict';
  if (mode !== 'predict' && mode !== 'executeAsync') {
    throw new Error(`unknown mode ${mode}`);
  }
  const got = mode === 'predict' ? model.predict(feeds) : await model.executeAsync(feeds);
  let named;
  if (got instanceof tf.Tensor) {
    named = [[model.outputNodes[0], got]];
  } else if (Array.isArray(got)) {
    named = got.map((t, i) => [model.outputNodes[i], t]);
  } else {
    named = Object.entries(got);
  }
  fs.mkdirSync(spec.out, {recursive: true});
  const outputs = [];
  for (const [i, [name, tensor]] of named.entries()) {
    const values = await tensor.data();
    const file = path.join(spec.out, `output_${i}.bin`);
    fs.writeFileSync(file, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
    outputs.push({name, shape: tensor.shape, dtype: tensor.dtype, file});
  }
  const result = {tfjs: tf.version.tfjs, backend: tf.getBackend(), inputNodes: model.inputNodes,
                  outputNodes: model.outputNodes, outputs};
  fs.writeFileSync(path.join(spec.out, 'result.json'), JSON.stringify(result));
  tf.dispose(Object.values(feeds));
  tf.dispose(named.map(([, t]) => t));
  model.dispose();
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1) {
    console.error('usage: node predict_graph.js <runs.json>');
    process.exit(2);
  }
  await useCpuBackend(tf);
  for (const spec of JSON.parse(fs.readFileSync(args[0], 'utf8'))) {
    try {
      await run(spec);
    } catch (error) {
      throw new Error(`${spec.model}: ${error && error.stack ? error.stack : error}`);
    }
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
