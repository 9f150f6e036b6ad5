#!/usr/bin/env node
// Decode the weights of TensorFlow.js web models with the stock JavaScript client.
//
//   node decode_weights.js <model-folder> <out.json> [<model-folder> <out.json> ...]
//
// For each folder: read model.json (or weights_manifest.json), read every group's shard files,
// concatenate them per group into one ArrayBuffer and decode it with tf.io.decodeWeights, exactly
// as tf.loadLayersModel / tf.loadGraphModel do after fetching. Writes to <out.json>:
//
//   {"tfjs": "4.22.0", "backend": "cpu",
//    "weights": {name: {"dtype", "shape", "hex"}},
//    "groups": [{"paths", "bytes": total bytes of the group's shards, "names"}]}
//
// where hex is the little-endian bytes of the decoded values (float32, int32, complex64 as
// interleaved float32 re/im, bool as one byte each), so a caller can compare bit for bit; string
// weights give "strings": [hex of each element's bytes] instead. The result goes to a file, never
// stdout: requiring tfjs in Node may print a banner there.
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {useCpuBackend} = require('./common');

function readModelJson(folder) {
  for (const name of ['model.json', 'weights_manifest.json']) {
    const file = path.join(folder, name);
    if (fs.existsSync(file)) {
      const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
      const manifest = Array.isArray(doc) ? doc : doc.weightsManifest;
      if (!Array.isArray(manifest)) {
        throw new Error(`${file}: no weights manifest (a list of groups) in it`);
      }
      return {file, doc, manifest};
    }
  }
  throw new Error(`${folder}: no model.json or weights_manifest.json`);
}

// A Buffer is a view into a possibly larger (pooled) ArrayBuffer: copy exactly its bytes.
function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

// One group's shards, concatenated in manifest order, as one ArrayBuffer.
function groupBuffer(folder, group) {
  const parts = group.paths.map((p) => fs.readFileSync(path.join(folder, p)));
  return toArrayBuffer(Buffer.concat(parts));
}

function hexOf(typed) {
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString('hex');
}

async function describe(tensor) {
  const out = {dtype: tensor.dtype, shape: tensor.shape};
  if (tensor.dtype === 'string') {
    out.strings = (await tensor.bytes()).map((b) => Buffer.from(b).toString('hex'));
  } else {
    out.hex = hexOf(await tensor.data());
  }
  return out;
}

async function decodeFolder(folder) {
  const {manifest} = readModelJson(folder);
  const weights = {};
  const groups = [];
  for (const group of manifest) {
    const data = groupBuffer(folder, group);
    const tensors = tf.io.decodeWeights(data, group.weights);
    for (const spec of group.weights) {
      const t = tensors[spec.name];
      if (t == null) {
        throw new Error(`${folder}: decodeWeights returned no tensor for ${spec.name}`);
      }
      weights[spec.name] = await describe(t);
      t.dispose();
    }
    groups.push({paths: group.paths, bytes: data.byteLength, names: group.weights.map((s) => s.name)});
  }
  return {weights, groups};
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length === 0 || args.length % 2 !== 0) {
    console.error('usage: node decode_weights.js <model-folder> <out.json> [<model-folder> <out.json> ...]');
    process.exit(2);
  }
  await useCpuBackend(tf);
  for (let i = 0; i < args.length; i += 2) {
    const {weights, groups} = await decodeFolder(args[i]);
    const result = {tfjs: tf.version.tfjs, backend: tf.getBackend(), weights, groups};
    fs.writeFileSync(args[i + 1], JSON.stringify(result));
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
