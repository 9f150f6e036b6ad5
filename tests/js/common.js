// Shared by the Node scripts: the checks and backend set-up both need before touching tfjs.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

// The scripts exchange tensors with Python as little-endian bytes, on tfjs's cpu backend.
async function useCpuBackend(tf) {
  if (os.endianness() !== 'LE') {
    throw new Error('these scripts exchange tensor bytes as little-endian; this machine is big-endian');
  }
  await tf.setBackend('cpu');
  await tf.ready();
  if (tf.getBackend() !== 'cpu') {
    throw new Error(`expected the cpu backend, got ${tf.getBackend()}`);
  }
}

// A Buffer is a view into a possibly larger (pooled) ArrayBuffer: copy exactly its bytes.
function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

// What tfjs's http / file handlers hand to a loader, read from <folder>/model.json: every key of
// the document (topology, format, signature, metadata...), the weight specs of all groups, and all
// shard files of all groups concatenated in manifest order as one ArrayBuffer.
function readArtifacts(folder) {
  const file = path.join(folder, 'model.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(doc.weightsManifest)) {
    throw new Error(`${file}: no weightsManifest`);
  }
  const weightSpecs = [];
  const parts = [];
  for (const group of doc.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) {
      parts.push(fs.readFileSync(path.join(folder, p)));
    }
  }
  const artifacts = {...doc, weightSpecs, weightData: toArrayBuffer(Buffer.concat(parts))};
  delete artifacts.weightsManifest;
  return artifacts;
}

module.exports = {readArtifacts, toArrayBuffer, useCpuBackend};
