// Drawing images for the chat: thumbnails, and an image with grounding boxes and points.

import { toPixels } from "./grounding.js";

const GROUNDING_COLORS = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a"];

export function thumbnail(bitmap, height) {
    const canvas = document.createElement("canvas");
    canvas.height = height;
    canvas.width = Math.max(1, Math.round((bitmap.width / bitmap.height) * height));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return canvas;
}

/** Draws `bitmap` (longest side at most 1024 px) with boxes and points over it. */
export function drawFigure(canvas, bitmap, items) {
    const scale = Math.min(1, 1024 / Math.max(bitmap.width, bitmap.height));
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    // Sizes in CSS pixels of the canvas as shown (it is scaled to fit its column).
    const line = 2 * (canvas.width / (canvas.clientWidth || canvas.width));
    ctx.lineWidth = line;
    ctx.font = `${Math.round(line * 6.5)}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    items.forEach((item, i) => {
        const color = GROUNDING_COLORS[i % GROUNDING_COLORS.length];
        ctx.strokeStyle = ctx.fillStyle = color;
        let x, y;
        if (item.type === "box") {
            const [x1, y1] = toPixels(item.box.slice(0, 2), canvas.width, canvas.height);
            const [x2, y2] = toPixels(item.box.slice(2), canvas.width, canvas.height);
            ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
            [x, y] = [x1, y1];
        } else {
            [x, y] = toPixels(item.point, canvas.width, canvas.height);
            ctx.beginPath();
            ctx.arc(x, y, line * 3, 0, 2 * Math.PI);
            ctx.fill();
            ctx.strokeStyle = "#fff";
            ctx.stroke();
            [x, y] = [x + line * 4, y - line * 3];
        }
        if (item.label) {
            const pad = line;
            const w = ctx.measureText(item.label).width + 2 * pad;
            const h = line * 7 + 2 * pad;
            const top = Math.max(0, Math.min(y - h, canvas.height - h));
            const left = Math.min(Math.max(0, x), canvas.width - w);
            ctx.fillStyle = color;
            ctx.fillRect(left, top, w, h);
            ctx.fillStyle = "#000";
            ctx.fillText(item.label, left + pad, top + pad);
        }
    });
}
