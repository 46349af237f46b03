// `model.chat.completions.create(body)`: the OpenAI Chat Completions request and response
// shapes over the package's own chat, so code written for an OpenAI client or WebLLM moves over
// by changing where `client` comes from. `stop` strings are matched on the streamed text and end
// the generation; text that might begin a stop string is held back until it cannot.

const KNOWN = [
  "messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
  "stop", "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "logprobs", "user",
];

/** OpenAI's finish_reason for the package's stop reason. */
const FINISH = { stop: "stop", length: "length", context_full: "length", cancelled: "stop" };

function check(body) {
  if (typeof body !== "object" || body === null) throw new TypeError("chat.completions.create needs a request object");
  const unknown = Object.keys(body).find((k) => !KNOWN.includes(k));
  if (unknown !== undefined) throw new Error(`chat.completions.create: unknown or unsupported parameter ${JSON.stringify(unknown)}`);
  if (!Array.isArray(body.messages)) throw new TypeError("chat.completions.create: `messages` must be an array");
  if (body.n != null && body.n !== 1) throw new Error("chat.completions.create: only n: 1 is supported");
  if (body.frequency_penalty) throw new Error("chat.completions.create: frequency_penalty is not supported (use presence_penalty or repetition_penalty)");
  if (body.logprobs) throw new Error("chat.completions.create: logprobs are not supported");
}

/** OpenAI messages → the package's (roles and content parts; `developer` is the system role). */
function messages(list) {
  return list.map((m, i) => {
    const role = m?.role === "developer" ? "system" : m?.role;
    if (!["system", "user", "assistant"].includes(role)) throw new Error(`messages[${i}].role ${JSON.stringify(m?.role)} is not supported`);
    const content = m.content ?? "";
    if (typeof content === "string") return { role, content };
    if (!Array.isArray(content)) throw new TypeError(`messages[${i}].content must be a string or an array of parts`);
    return { role, content };
  });
}

/** The chat options a request asks for. */
function options(body) {
  const out = {};
  const max = body.max_completion_tokens ?? body.max_tokens;
  if (max != null) out.maxNewTokens = max;
  // OpenAI's temperature 0 is argmax decoding.
  if (body.temperature === 0) out.greedy = true;
  else if (body.temperature != null) out.temperature = body.temperature;
  if (body.top_p != null) out.topP = body.top_p;
  if (body.seed != null) out.seed = body.seed;
  if (body.presence_penalty != null) out.presencePenalty = body.presence_penalty;
  if (body.repetition_penalty != null) out.repetitionPenalty = body.repetition_penalty;
  return out;
}

/**
 * Cuts streamed text at the first of `stops`: `push(text)` returns the text that is safe to
 * show now (none of it can start a stop string) and whether a stop string was found.
 */
function stopMatcher(stops) {
  let text = "";
  let shown = 0;
  return {
    push(delta) {
      text += delta;
      let cut = -1;
      for (const s of stops) {
        const at = text.indexOf(s, Math.max(0, shown - s.length + 1));
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        const out = text.slice(shown, cut);
        shown = cut;
        return { out, stopped: true };
      }
      let hold = 0;
      for (const s of stops) {
        for (let n = Math.min(s.length - 1, text.length - shown); n > hold; n--) {
          if (text.endsWith(s.slice(0, n))) {
            hold = n;
            break;
          }
        }
      }
      const out = text.slice(shown, text.length - hold);
      shown = text.length - hold;
      return { out, stopped: false };
    },
    rest() {
      const out = text.slice(shown);
      shown = text.length;
      return out;
    },
    text: () => text.slice(0, shown),
  };
}

function abortError(signal) {
  return signal.reason instanceof Error ? signal.reason : new DOMException("The request was aborted", "AbortError");
}

/**
 * `completions.create(body, { signal })` over `run(messages, options, onDelta(text, tokenId))`
 * (a chat that resolves to the package's ChatResult). `model()` names the loaded model.
 */
export function completions(run, model) {
  return {
    async create(body, { signal } = {}) {
      check(body);
      signal?.throwIfAborted();
      const stops = [body.stop ?? []].flat().filter((s) => typeof s === "string" && s.length);
      const id = `chatcmpl-${crypto.randomUUID()}`;
      const created = Math.floor(Date.now() / 1000);
      const name = body.model ?? model();
      const matcher = stopMatcher(stops);
      const inner = new AbortController();
      const onAbort = () => inner.abort(signal.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      let stopped = false;
      const start = (onText) =>
        run(messages(body.messages), { ...options(body), signal: inner.signal }, (delta, token) => {
          if (stopped) return;
          const { out, stopped: hit } = matcher.push(delta);
          onText(out, token);
          if (hit) {
            stopped = true;
            inner.abort();
          }
        }).then((result) => {
          signal?.removeEventListener("abort", onAbort);
          if (signal?.aborted) throw abortError(signal);
          const finish = stopped ? "stop" : FINISH[result.stop] ?? result.stop;
          const usage = {
            prompt_tokens: result.promptTokens,
            completion_tokens: result.ids.length,
            total_tokens: result.promptTokens + result.ids.length,
            prompt_tokens_details: { cached_tokens: result.timings.cachedTokens },
          };
          return { result, finish, usage };
        });
      const chunk = (choice, extra = {}) => ({ id, object: "chat.completion.chunk", created, model: name, choices: [choice], ...extra });

      if (!body.stream) {
        const { result, finish, usage } = await start(() => {});
        const content = stopped ? matcher.text() : matcher.text() + matcher.rest();
        return {
          id, object: "chat.completion", created, model: name,
          choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finish, logprobs: null, token_ids: result.ids }],
          usage,
        };
      }

      // Streaming: chunks queue up as the chat produces them and are handed out on iteration.
      const queue = [chunk({ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null, logprobs: null, token_ids: [] })];
      let wake = null;
      let end = null;
      const push = (c) => {
        queue.push(c);
        wake?.();
      };
      start((out, token) => push(chunk({ index: 0, delta: { content: out }, finish_reason: null, logprobs: null, token_ids: [token] }))).then(
        ({ finish, usage }) => {
          const rest = stopped ? "" : matcher.rest();
          push(chunk({ index: 0, delta: rest ? { content: rest } : {}, finish_reason: finish, logprobs: null, token_ids: [] }));
          if (body.stream_options?.include_usage) push({ id, object: "chat.completion.chunk", created, model: name, choices: [], usage });
          end = { ok: true };
          wake?.();
        },
        (error) => {
          end = { error };
          wake?.();
        },
      );
      return {
        async *[Symbol.asyncIterator]() {
          for (;;) {
            if (queue.length) yield queue.shift();
            else if (end) {
              if (end.error) throw end.error;
              return;
            } else await new Promise((r) => (wake = r)).finally(() => (wake = null));
          }
        },
      };
    },
  };
}
