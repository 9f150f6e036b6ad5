// Shared by the Node scripts: the checks and backend set-up both need before touching tfjs.
'use strict';
const os = require('os');

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

module.exports = {useCpuBackend};
