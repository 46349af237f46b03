// The demo's grounding parser (www/grounding.js): `node --test tests/browser/grounding.test.mjs`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseGrounding, toPixels } from "../../www/grounding.js";

test("JSON array of boxes inside a ```json fence, with prose around it", () => {
    const text = 'Here they are:\n```json\n[\n  {"bbox_2d": [12, 40, 380, 900], "label": "cat"},\n  {"bbox_2d": [500, 100, 990, 640], "label": "dog"}\n]\n```\nTwo animals.';
    assert.deepEqual(parseGrounding(text), [
        { type: "box", box: [12, 40, 380, 900], label: "cat" },
        { type: "box", box: [500, 100, 990, 640], label: "dog" },
    ]);
});

test("points, a single object, a missing label, escapes in labels", () => {
    assert.deepEqual(parseGrounding('{"point_2d": [250, 750], "label": "the \\"left\\" eye"}'), [
        { type: "point", point: [250, 750], label: 'the "left" eye' },
    ]);
    assert.deepEqual(parseGrounding('[{"point_2d":[1,2]},{"label":"b","bbox_2d":[3,4,5,6]}]'), [
        { type: "point", point: [1, 2], label: "" },
        { type: "box", box: [3, 4, 5, 6], label: "b" },
    ]);
    assert.deepEqual(parseGrounding('{"bbox_2d": [1, 2, 3, 4], "label": "\\u00e9t\\u00e9"}')[0].label, "été");
});

test("boxes with swapped corners are ordered; coordinates are clamped to 0–1000", () => {
    assert.deepEqual(parseGrounding('{"bbox_2d": [800, 900, 100, 50]}'), [{ type: "box", box: [100, 50, 800, 900], label: "" }]);
    assert.deepEqual(parseGrounding('{"bbox_2d": [-5, 10.5, 1200, 999]}'), [{ type: "box", box: [0, 10.5, 1000, 999], label: "" }]);
});

test("special-token form, with and without a label, and with the tokens stripped", () => {
    const text = "<|object_ref_start|>red car<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|> and <|box_start|>(5, 6), (7, 8)<|box_end|>";
    assert.deepEqual(parseGrounding(text), [
        { type: "box", box: [10, 20, 300, 400], label: "red car" },
        { type: "box", box: [5, 6, 7, 8], label: "" },
    ]);
    assert.deepEqual(parseGrounding("red car(10,20),(300,400)"), [{ type: "box", box: [10, 20, 300, 400], label: "" }]);
});

test("JSON and token forms mixed keep the order of appearance", () => {
    const text = '<|box_start|>(1,1),(2,2)<|box_end|> then {"point_2d": [3, 3], "label": "p"} then <|box_start|>(4,4),(5,5)<|box_end|>';
    assert.deepEqual(
        parseGrounding(text).map((g) => g.box ?? g.point),
        [[1, 1, 2, 2], [3, 3], [4, 4, 5, 5]],
    );
});

test("a coordinate pair inside a JSON label is not a second box", () => {
    assert.deepEqual(parseGrounding('{"bbox_2d": [1, 2, 3, 4], "label": "at (1,2),(3,4)"}'), [
        { type: "box", box: [1, 2, 3, 4], label: "at (1,2),(3,4)" },
    ]);
});

test("a half-streamed answer yields only its finished objects; plain text yields nothing", () => {
    const full = '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "label": "b"}]\n```';
    const cut = full.indexOf("[5, 6");
    assert.deepEqual(parseGrounding(full.slice(0, cut)).map((g) => g.label), ["a"]);
    assert.deepEqual(parseGrounding(full).map((g) => g.label), ["a", "b"]);
    assert.deepEqual(parseGrounding("A cat sits on a mat (a red one), next to {a dog}."), []);
    assert.deepEqual(parseGrounding('{"bbox_2d": [1, 2, 3]}'), []);
});

test("toPixels maps 0–1000 onto the image size", () => {
    assert.deepEqual(toPixels([500, 250], 640, 480), [320, 120]);
    assert.deepEqual(toPixels([1000, 0], 1280, 720), [1280, 0]);
});
