// face-api's own forward passes (pure-JS CPU backend of TF.js), for the import's parity test and
// for measuring face-api's face cut. Reads a JSON list of raw RGB uint8 images
// [{"path": ..., "height": h, "width": w}], writes a JSON list of results.
//   node reference.js net IN.json OUT.json [--map]   age net on each whole image (face-api pads
//                                                   it to a square and resizes it to 112 px)
//   node reference.js detect IN.json OUT.json        SSD MobileNet faces, 68 landmarks, age net on
//                                                   each face's alignedRect (face-api's pipeline)
const fs = require('fs');
const path = require('path');

console.log = () => {};  // TF.js advertises its native backend on stdout; results go to OUT.json
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

function readImages(list) {
  return JSON.parse(fs.readFileSync(list, 'utf8')).map((item) => {
    const data = new Uint8Array(fs.readFileSync(item.path));
    if (data.length !== item.height * item.width * 3) throw new Error(`${item.path}: not ${item.height}x${item.width}x3 bytes`);
    return faceapi.tf.tensor3d(data, [item.height, item.width, 3], 'int32');
  });
}

async function net(images, withMap) {
  const model = faceapi.nets.ageGenderNet;
  const results = [];
  for (const image of images) {
    const input = await faceapi.toNetInput(image);
    const out = model.forwardInput(input);
    const result = { age: out.age.dataSync()[0], gender: Array.from(out.gender.dataSync()) };
    if (withMap) {
      const map = model.faceFeatureExtractor.forwardInput(input);
      result.map = Array.from(map.dataSync());
      result.map_shape = map.shape;
    }
    results.push(result);
  }
  return results;
}

async function detect(images) {
  const results = [];
  for (const image of images) {
    const faces = await faceapi.detectAllFaces(image, new faceapi.SsdMobilenetv1Options({ minConfidence: 0.2 }))
      .withFaceLandmarks().withAgeAndGender();
    results.push(faces.map((f) => ({
      score: f.detection.score,
      box: [f.detection.box.x, f.detection.box.y, f.detection.box.width, f.detection.box.height],
      aligned: [f.alignedRect.box.x, f.alignedRect.box.y, f.alignedRect.box.width, f.alignedRect.box.height],
      age: f.age,
    })));
  }
  return results;
}

async function main() {
  const [mode, list, output, flag] = process.argv.slice(2);
  if (!['net', 'detect'].includes(mode) || !list || !output) {
    console.error('usage: node reference.js net|detect IN.json OUT.json [--map]');
    process.exit(2);
  }
  // The age net's parity runs on the plain JavaScript kernels; the detector is too slow there
  // (minutes a face), so detection runs on the WebAssembly ones the package also ships.
  if (mode === 'detect') {
    const wasm = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    faceapi.tf.setWasmPaths(path.join(wasm, 'dist') + path.sep);
  }
  await faceapi.tf.setBackend(mode === 'detect' ? 'wasm' : 'cpu');
  await faceapi.tf.ready();
  const models = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.ageGenderNet.loadFromDisk(models);
  if (mode === 'detect') {
    await faceapi.nets.ssdMobilenetv1.loadFromDisk(models);
    await faceapi.nets.faceLandmark68Net.loadFromDisk(models);
  }
  const images = readImages(list);
  const results = mode === 'net' ? await net(images, flag === '--map') : await detect(images);
  fs.writeFileSync(output, JSON.stringify({ backend: faceapi.tf.getBackend(), version: faceapi.version, results }));
}

main().catch((error) => { console.error(error.message || error); process.exit(1); });
