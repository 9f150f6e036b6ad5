#!/usr/bin/env node
// Run tfjs graph models in stock tfjs 4.22 under Node: load, predict, write the outputs, optionally
// time repeated predictions. Test-only helper for the per-channel rewrite (tests/graph/ and
// benchmarks/per_channel.py); to be merged with the product-level tfjs runner later.
//
//   node predict_graph_pc.js <jobs.json>
//
// jobs.json: [{"model": "<path of model.json (or X.json)>", "backend": "cpu" | "wasm",
//              "inputs": {"<input node name>": {"shape": [...], "file": "<float32 LE>"}},
//              "out": "<prefix>", "repeat": 0}]
// Every job uses the first job's backend. For each job, writes <prefix>.json: {"tfjs", "backend", "outputs": [{"name", "shape", "file"}],
// "times_ms": [per repeated predict]} and each output as float32 little-endian <prefix>.<i>.f32.
// Shards are read relative to the model file; tf.io.fromMemory hands everything to
// tf.loadGraphModel as a fetched model would. Outputs go to files, never stdout (tfjs prints a
// banner there).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {useCpuBackend} = require('./common');

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

async function load(file) {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const folder = path.dirname(file);
  const specs = [];
  const parts = [];
  for (const group of doc.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) {
      parts.push(fs.readFileSync(path.join(folder, p)));
    }
  }
  const artifacts = {
    modelTopology: doc.modelTopology, weightSpecs: specs, weightData: toArrayBuffer(Buffer.concat(parts)),
    format: doc.format, generatedBy: doc.generatedBy, convertedBy: doc.convertedBy,
    signature: doc.signature, userDefinedMetadata: doc.userDefinedMetadata,
    modelInitializer: doc.modelInitializer,
  };
  return tf.loadGraphModel(tf.io.fromMemory(artifacts));
}

async function setBackend(name) {
  if (name === 'cpu' || !name) {
    await useCpuBackend(tf);
    return;
  }
  if (name === 'wasm') {
    require('@tensorflow/tfjs-backend-wasm');
  }
  await tf.setBackend(name);
  await tf.ready();
  if (tf.getBackend() !== name) {
    throw new Error(`expected the ${name} backend, got ${tf.getBackend()}`);
  }
}

function readInputs(inputs) {
  const feed = {};
  for (const [name, spec] of Object.entries(inputs)) {
    const buf = fs.readFileSync(spec.file);
    const values = new Float32Array(toArrayBuffer(buf));
    feed[name] = tf.tensor(values, spec.shape, 'float32');
  }
  return feed;
}

// execute() refuses graphs with control flow or dynamic ops; executeAsync runs every graph.
async function run(model, feed) {
  let out;
  try {
    out = model.execute(feed);
  } catch (error) {
    out = await model.executeAsync(feed);
  }
  return Array.isArray(out) ? out : [out];
}

async function loadJob(spec) {
  const model = await load(spec.model);
  const feed = readInputs(spec.inputs);
  const outputs = await run(model, feed);
  const names = model.outputs.map((o) => o.name);
  const described = [];
  for (let i = 0; i < outputs.length; i++) {
    const t = outputs[i];
    const values = await t.data();
    const file = `${spec.out}.${i}.f32`;
    const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
    fs.writeFileSync(file, Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength));
    described.push({name: names[i] || String(i), shape: t.shape, dtype: t.dtype, file});
  }
  tf.dispose(outputs);
  return {spec, model, feed, described, times: []};
}

async function timeOnce(loaded) {
  const start = process.hrtime.bigint();
  const again = await run(loaded.model, loaded.feed);
  await Promise.all(again.map((t) => t.data()));
  loaded.times.push(Number(process.hrtime.bigint() - start) / 1e6);
  tf.dispose(again);
}

// All jobs of a file share one backend. Models are loaded first, then timed in rounds (one
// predict of each model per round), so a change in the machine's load hits every model alike.
async function runJobs(jobs) {
  await setBackend(jobs.length ? jobs[0].backend : 'cpu');
  const loaded = [];
  for (const spec of jobs) {
    try {
      loaded.push(await loadJob(spec));
    } catch (error) {
      throw new Error(`${spec.model}: ${error && error.message ? error.message : error}`);
    }
  }
  const rounds = Math.max(0, ...jobs.map((j) => j.repeat || 0));
  for (let r = 0; r < rounds; r++) {
    for (const l of loaded) {
      if (r < (l.spec.repeat || 0)) {
        await timeOnce(l);
      }
    }
  }
  for (const l of loaded) {
    tf.dispose(Object.values(l.feed));
    l.model.dispose();
    const result = {tfjs: tf.version.tfjs, backend: tf.getBackend(), outputs: l.described, times_ms: l.times};
    fs.writeFileSync(`${l.spec.out}.json`, JSON.stringify(result));
  }
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1) {
    console.error('usage: node predict_graph_pc.js <jobs.json>');
    process.exit(2);
  }
  await runJobs(JSON.parse(fs.readFileSync(args[0], 'utf8')));
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
