// Reference runner for tests and benchmarks: runs an ONNX model with ONNX Runtime (the npm
// package onnxruntime-node, fetched by scripts/fetch_models.sh) on .npy inputs and writes each
// output as OUTDIR/<name>.npy. A peer, never part of dynaprec's execution path.
//
//   node ort_run.js MODEL.onnx OUTDIR NAME=FILE.npy [...] [--threads N] [--runs R]
//
// With --runs R > 0 it also times R runs after 3 warm-ups and prints {"median_ms": ...} as JSON.
// Supports .npy v1-3, little-endian float32/int64/int32/uint8/bool, C order.
'use strict';
const fs = require('fs');
const path = require('path');

function resolveOrt() {
  const cache = process.env.DYNAPREC_CACHE || path.join(require('os').homedir(), '.cache', 'dynaprec');
  return require(path.join(cache, 'npm', 'node_modules', 'onnxruntime-node'));
}

const kTypes = {
  '<f4': ['float32', Float32Array], '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array],
  '|u1': ['uint8', Uint8Array], '|b1': ['bool', Uint8Array],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: Fortran order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map(s => s.trim())
      .filter(s => s.length).map(Number);
  const t = kTypes[descr];
  if (!t) throw new Error(`${file}: dtype ${descr} not supported`);
  const data = buf.subarray(start + hlen);
  const copy = new Uint8Array(data.length);
  copy.set(data);
  const arr = new t[1](copy.buffer, 0, data.length / t[1].BYTES_PER_ELEMENT);
  return { type: t[0], shape, data: t[0] === 'bool' ? Uint8Array.from(arr) : arr };
}

function writeNpy(file, tensor) {
  const descr = { float32: '<f4', int64: '<i8', int32: '<i4', uint8: '|u1', bool: '|b1' }[tensor.type];
  if (!descr) throw new Error(`output type ${tensor.type} not supported`);
  const dims = tensor.dims.map(Number);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const d = tensor.data;
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'),
                                        Buffer.from(d.buffer, d.byteOffset, d.byteLength)]));
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length < 2) throw new Error('usage: ort_run.js MODEL.onnx OUTDIR NAME=FILE.npy [...]');
  const [model, outdir] = args;
  let threads = 1, runs = 0;
  const feeds = {};
  const ort = resolveOrt();
  for (let i = 2; i < args.length; ++i) {
    if (args[i] === '--threads') threads = Number(args[++i]);
    else if (args[i] === '--runs') runs = Number(args[++i]);
    else {
      const eq = args[i].indexOf('=');
      const a = readNpy(args[i].slice(eq + 1));
      feeds[args[i].slice(0, eq)] = new ort.Tensor(a.type, a.data, a.shape);
    }
  }
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ['cpu'],
  });
  const out = await session.run(feeds);
  fs.mkdirSync(outdir, { recursive: true });
  for (const [name, t] of Object.entries(out)) writeNpy(path.join(outdir, `${name}.npy`), t);
  if (runs > 0) {
    for (let i = 0; i < 3; ++i) await session.run(feeds);
    const times = [];
    for (let i = 0; i < runs; ++i) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    console.log(JSON.stringify({ median_ms: times[times.length >> 1], min_ms: times[0],
                                 max_ms: times[times.length - 1], runs }));
  }
}

main().catch(e => { console.error(`ort_run: ${e.message}`); process.exit(2); });
