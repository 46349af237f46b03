// pkg/src/openai.js in Node over a scripted chat (the browser e2e test runs it over the model):
// stop strings cut the text (also across deltas, and text that might start one is held back),
// finish reasons map to OpenAI's, parameters map to the package's options, and refused
// parameters and aborts are Errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { completions } from "../../pkg/src/openai.js";

/** A chat that streams `deltas` (ids 1, 2, …) and ends with `stop`, recording its options. */
function scripted(deltas, stop = "stop") {
  const seen = {};
  const run = async (messages, options, onDelta) => {
    Object.assign(seen, { messages, options });
    const ids = [];
    for (const [i, d] of deltas.entries()) {
      if (options.signal?.aborted) return { ids, text: "", stop: "cancelled", promptTokens: 7, timings: { cachedTokens: 5 } };
      ids.push(i + 1);
      onDelta(d, i + 1);
      await new Promise((r) => setTimeout(r, 1));
    }
    return { ids, text: deltas.join(""), stop, promptTokens: 7, timings: { cachedTokens: 5 } };
  };
  return { api: completions(run, () => "tiny"), seen };
}

const user = [{ role: "user", content: "hi" }];

test("non-streaming: the OpenAI shape, options mapped, finish reasons", async () => {
  const { api, seen } = scripted(["Hel", "lo", "!"], "length");
  const r = await api.create({ model: "m", messages: [{ role: "developer", content: "sys" }, ...user], max_tokens: 3, temperature: 0, top_p: 0.5, seed: 4 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, "m");
  assert.deepEqual(r.choices[0].message, { role: "assistant", content: "Hello!" });
  assert.equal(r.choices[0].finish_reason, "length");
  assert.deepEqual(r.choices[0].token_ids, [1, 2, 3]);
  assert.deepEqual(r.usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10, prompt_tokens_details: { cached_tokens: 5 } });
  assert.equal(seen.messages[0].role, "system");
  const { signal, ...options } = seen.options;
  assert.ok(signal instanceof AbortSignal);
  assert.deepEqual(options, { maxNewTokens: 3, greedy: true, topP: 0.5, seed: 4 });
  assert.equal((await scripted(["a"], "context_full").api.create({ messages: user })).choices[0].finish_reason, "length");
  assert.equal((await scripted(["a"]).api.create({ messages: user })).model, "tiny");
});

test("stop strings end the text before them, across deltas, and stop the generation", async () => {
  const { api } = scripted(["The ans", "wer is 4", "2.\n\nMore", " text", " never"]);
  const r = await api.create({ messages: user, stop: ["\n\n", "XYZ"] });
  assert.equal(r.choices[0].message.content, "The answer is 42.");
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.ok(r.choices[0].token_ids.length < 5, "generation went on after the stop string");

  const chunks = [];
  for await (const c of await scripted(["ab", "c<", "|e", "nd|>", "zz"]).api.create({ messages: user, stream: true, stop: "<|end|>" })) chunks.push(c);
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  assert.equal(text, "abc");
  assert.ok(!chunks.some((c) => (c.choices[0]?.delta.content ?? "").includes("<")), "text that could start the stop string was shown");
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
  // Held-back text that turns out not to be a stop string is shown after all.
  const held = [];
  for await (const c of await scripted(["x<", "|en", "d"]).api.create({ messages: user, stream: true, stop: ["<|end|>"] })) held.push(c);
  assert.equal(held.map((c) => c.choices[0]?.delta.content ?? "").join(""), "x<|end");
});

test("streaming: a role chunk, one chunk per token with its id, the finish chunk, the usage chunk", async () => {
  const chunks = [];
  for await (const c of await scripted(["a", "b"]).api.create({ messages: user, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
  assert.deepEqual(chunks.map((c) => [c.choices[0]?.delta ?? null, c.choices[0]?.finish_reason ?? null, c.choices[0]?.token_ids ?? null]), [
    [{ role: "assistant", content: "" }, null, []],
    [{ content: "a" }, null, [1]],
    [{ content: "b" }, null, [2]],
    [{}, "stop", []],
    [null, null, null],
  ]);
  assert.deepEqual(chunks.at(-1).usage, { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9, prompt_tokens_details: { cached_tokens: 5 } });
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id && c.id.startsWith("chatcmpl-")));
});

test("refused parameters and aborts are Errors", async () => {
  const { api } = scripted(["a", "b", "c"]);
  for (const [body, word] of [[{ messages: user, tools: [] }, "tools"], [{ messages: user, n: 2 }, "n: 1"], [{ messages: user, frequency_penalty: 1 }, "frequency_penalty"],
    [{ messages: user, logprobs: true }, "logprobs"], [{ messages: [{ role: "tool", content: "x" }] }, "tool"]]) {
    await assert.rejects(api.create(body), (e) => e instanceof Error && e.message.includes(word), word);
  }
  const controller = new AbortController();
  const stream = await api.create({ messages: user, stream: true }, { signal: controller.signal });
  controller.abort();
  await assert.rejects((async () => {
    for await (const _ of stream);
  })(), (e) => e.name === "AbortError");
});
