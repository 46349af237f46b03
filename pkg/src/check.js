// Option objects are checked by name, so a misspelt option is an Error rather than ignored.

export const LOAD_OPTIONS = ["weights", "contextLength", "shardMiB", "warmUp", "onProgress", "signal"];

/** Throws an Error naming the first key of `options` not in `known`. */
export function checkKeys(options, known, what) {
  if (options == null) return;
  if (typeof options !== "object") throw new TypeError(`${what} must be an object`);
  const unknown = Object.keys(options).find((k) => !known.includes(k));
  if (unknown !== undefined) throw new Error(`${what}: unknown option ${JSON.stringify(unknown)} (known: ${known.join(", ")})`);
}
