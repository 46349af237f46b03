// A module worker for inputs.test.mjs: runs the package's Engine (pkg/src/engine.js) directly
// and destroys its GPU device between two answers, as a driver reset or the browser would.
const devices = [];
const requestDevice = GPUAdapter.prototype.requestDevice;
GPUAdapter.prototype.requestDevice = async function (...args) {
  const device = await requestDevice.apply(this, args);
  devices.push(device);
  return device;
};

self.onmessage = async ({ data: { entry, model, image, prompt } }) => {
  const failure = (work) => work.then(() => null, (e) => e.message);
  try {
    const { Engine } = await import(entry);
    const messages = [{ role: "user", content: [{ type: "image", image }, { type: "text", text: prompt }] }];
    const ask = async (engine) => (await engine.chat(messages, { greedy: true, maxNewTokens: 6 })).ids;
    const engine = await Engine.load(model, { warmUp: false });
    const before = await ask(engine);
    devices.at(-1).destroy();
    await devices.at(-1).lost;
    const lostError = await failure(ask(engine));
    const again = await failure(ask(engine));
    const after = await ask(await Engine.load(model, { warmUp: false }));
    self.postMessage({ before, lostError, again, after, devices: devices.length });
  } catch (e) {
    self.postMessage({ error: `${e.message}\n${e.stack}` });
  }
};
