// A small app as a web developer writes one: the package from node_modules, a service worker
// (public/sw.js) controlling the page, built by `vite build` (tests/browser/vite.test.mjs).
import { Qwen3VL } from "qwen3-vl-webgpu";

window.controlled = navigator.serviceWorker.register("./sw.js").then(async () => {
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) await new Promise((ok) => navigator.serviceWorker.addEventListener("controllerchange", ok, { once: true }));
  return true;
});

window.ask = async (model, image, prompt, maxNewTokens) => {
  const m = await Qwen3VL.load(model);
  const chat = m.chat([{ role: "user", content: [{ type: "image", image }, { type: "text", text: prompt }] }], { greedy: true, maxNewTokens });
  for await (const _ of chat);
  const { ids, text } = await chat.result;
  await m.unload();
  return { ids, text };
};
