// Qwen3-VL grounding output → boxes and points, in the model's 0–1000 image-relative coordinates.
//
// The model answers grounding requests in two forms:
//   JSON (Qwen3-VL's default, often inside ```json fences, one object or an array):
//     [{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}, {"point_2d": [x, y], "label": "eye"}]
//   special tokens (the Qwen2-VL form):
//     <|object_ref_start|>cat<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>
// When the text was decoded with special tokens skipped, the second form arrives as
// "cat(x1,y1),(x2,y2)"; the bare coordinate pair is still recognised (without its label,
// which has no delimiter left).
//
// Parsing is by pattern, not JSON.parse of the whole answer, so that prose around the JSON,
// several fenced blocks, or a half-streamed answer (the unfinished object is simply not yet
// matched) all work: parse the accumulated text after every delta and redraw.

const NUM = String.raw`-?\d+(?:\.\d+)?`;
// A flat JSON object: grounding objects hold only scalars and arrays, never nested objects.
const FLAT_OBJECT = /\{[^{}]*\}/g;
const BBOX_FIELD = new RegExp(String.raw`"bbox_2d"\s*:\s*\[\s*(${NUM})\s*,\s*(${NUM})\s*,\s*(${NUM})\s*,\s*(${NUM})\s*\]`);
const POINT_FIELD = new RegExp(String.raw`"point_2d"\s*:\s*\[\s*(${NUM})\s*,\s*(${NUM})\s*\]`);
const LABEL_FIELD = /"label"\s*:\s*"((?:[^"\\]|\\.)*)"/;
const PAIR = String.raw`\(\s*(${NUM})\s*,\s*(${NUM})\s*\)`;
const TOKEN_BOX = new RegExp(
    String.raw`(?:<\|object_ref_start\|>([\s\S]*?)<\|object_ref_end\|>\s*)?(?:<\|box_start\|>\s*)?${PAIR}\s*,\s*${PAIR}(?:\s*<\|box_end\|>)?`,
    "g",
);

/** The 0–1000 range the model's coordinates live in. */
export const SCALE = 1000;

/**
 * Every box and point in `text`, in order of appearance.
 * @param {string} text a (possibly partial) model answer
 * @returns {Array<{type: "box", box: [number, number, number, number], label: string}
 *                | {type: "point", point: [number, number], label: string}>}
 *   coordinates clamped to 0–1000, boxes ordered so that x1 ≤ x2 and y1 ≤ y2;
 *   label "" when the answer gave none.
 */
export function parseGrounding(text) {
    const found = [];
    const objects = [];
    for (const m of text.matchAll(FLAT_OBJECT)) {
        const object = m[0];
        objects.push([m.index, m.index + object.length]);
        const label = jsonLabel(object);
        const bbox = BBOX_FIELD.exec(object);
        if (bbox) {
            found.push({ at: m.index, item: box(bbox.slice(1, 5).map(Number), label) });
            continue;
        }
        const point = POINT_FIELD.exec(object);
        if (point) found.push({ at: m.index, item: { type: "point", point: [clamp(+point[1]), clamp(+point[2])], label } });
    }
    for (const m of text.matchAll(TOKEN_BOX)) {
        // Inside a JSON string (a label such as "(1,2),(3,4)") the JSON pass owns it.
        if (objects.some(([start, end]) => m.index >= start && m.index < end)) continue;
        found.push({ at: m.index, item: box(m.slice(2, 6).map(Number), m[1] === undefined ? "" : m[1].trim()) });
    }
    return found.sort((a, b) => a.at - b.at).map(({ item }) => item);
}

/**
 * Maps a 0–1000 coordinate pair onto an image of `width` × `height` pixels.
 * @returns {[number, number]}
 */
export function toPixels([x, y], width, height) {
    return [(x / SCALE) * width, (y / SCALE) * height];
}

function box([x1, y1, x2, y2], label) {
    return {
        type: "box",
        box: [clamp(Math.min(x1, x2)), clamp(Math.min(y1, y2)), clamp(Math.max(x1, x2)), clamp(Math.max(y1, y2))],
        label,
    };
}

function jsonLabel(object) {
    const m = LABEL_FIELD.exec(object);
    if (!m) return "";
    try {
        return JSON.parse(`"${m[1]}"`);
    } catch {
        return m[1];
    }
}

function clamp(v) {
    return Math.min(SCALE, Math.max(0, v));
}
