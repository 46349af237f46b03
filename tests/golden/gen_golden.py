#!/usr/bin/env python3
"""Golden fixtures for the Rust runtime: tiny random Qwen3-VL checkpoints + transformers outputs.

Regenerate (from the repository root, with the venv of tests/golden/requirements.txt):

    /work/venv/bin/python tests/golden/gen_golden.py

Writes tests/golden/<case>/{config.json, model.safetensors, generation_config.json, golden.safetensors}
for every case in CASES, then reloads each folder and checks that the reloaded model reproduces
golden.safetensors bit for bit.  `--check` only does the reload check.  See tests/golden/README.md.

Everything runs on the CPU in fp32 with attn_implementation="eager", one thread, fixed seeds.
"""

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

import transformers
from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.vision_utils import get_vision_interpolation_indices_and_weights

HERE = os.path.dirname(os.path.abspath(__file__))
N_NEW = 16  # greedy continuation length

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------------------------
# Case definitions
# --------------------------------------------------------------------------------------------

def text_cfg(vocab, hidden, inter, layers, heads, kv, head_dim, mrope, theta=5e6, tie=True):
    return dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
        rope_parameters=dict(rope_type="default", rope_theta=theta, mrope_section=mrope, mrope_interleaved=True),
        max_position_embeddings=4096, rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False,
        tie_word_embeddings=tie,
    )


def vision_cfg(depth, hidden, inter, heads, out, n_pos, deepstack):
    return dict(
        depth=depth, hidden_size=hidden, intermediate_size=inter, num_heads=heads, in_channels=3,
        patch_size=16, temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=out,
        num_position_embeddings=n_pos, deepstack_visual_indexes=deepstack, hidden_act="gelu_pytorch_tanh",
    )


def ids(vocab, **named):
    """Special-token layout of one tiny vocab; every id < vocab and all distinct."""
    assert len(set(named.values())) == len(named) and max(named.values()) < vocab
    return named


# Seeds were picked (from a scan of 24) for top-1 margins >= 0.12 and non-trivial greedy sequences.
# Each case: seed, text/vision config, special ids, tie, save dtype, and the prompt as a list of
# segments: ("text", n) = n arbitrary in-vocab text ids, ("image", k) = k-th image block
# <vision_start> <image_pad>*(t*h*w/4) <vision_end>, ("video", k) = k-th video, written the way the
# transformers 5.23 processor writes it: the template's <vision_start>, then per temporal patch
# "<ts seconds>" text ids + <vision_start> <video_pad>*(h*w/4) <vision_end>, then the template's
# <vision_end>.
CASES = {
    "text_only": dict(
        seed=2008,
        text=text_cfg(vocab=203, hidden=64, inter=160, layers=3, heads=4, kv=2, head_dim=16, mrope=[4, 2, 2]),
        vision=vision_cfg(depth=2, hidden=32, inter=64, heads=2, out=64, n_pos=16, deepstack=[1]),
        special=ids(203, vision_start=190, vision_end=191, image=192, video=193, im_start=194, im_end=195,
                    endoftext=196),
        tie=True, dtype="float32",
        prompt=[("text", 21)], images=[], videos=[],
        doc="Text only, GQA 4/2 (ratio 2), tied embeddings, 3 layers. No pixels; position_ids are arange.",
    ),
    "image_nonsquare": dict(
        seed=2019,
        text=text_cfg(vocab=227, hidden=64, inter=128, layers=3, heads=8, kv=2, head_dim=16, mrope=[4, 2, 2]),
        vision=vision_cfg(depth=3, hidden=32, inter=64, heads=2, out=64, n_pos=16, deepstack=[0, 1]),
        special=ids(227, vision_start=201, vision_end=202, image=203, video=204, im_start=210, im_end=211,
                    endoftext=212),
        tie=True, dtype="float32",
        prompt=[("text", 5), ("image", 0), ("text", 4)], images=[(1, 6, 10)], videos=[],
        doc="One image, grid (1,6,10) (15 merged tokens), GQA 8/2 (ratio 4, q_proj 64->128), "
            "3-block ViT with deepstack [0,1], pos-embed table 4x4 interpolated up to 6x10.",
    ),
    "two_images": dict(
        seed=2003,
        text=text_cfg(vocab=251, hidden=64, inter=128, layers=3, heads=4, kv=2, head_dim=16, mrope=[4, 2, 2]),
        vision=vision_cfg(depth=3, hidden=32, inter=64, heads=2, out=64, n_pos=64, deepstack=[0, 2]),
        special=ids(251, vision_start=17, vision_end=18, image=19, video=20, im_start=240, im_end=241,
                    endoftext=242),
        tie=True, dtype="float32",
        prompt=[("text", 3), ("image", 0), ("text", 2), ("image", 1), ("text", 3)],
        images=[(1, 4, 6), (1, 8, 4)], videos=[],
        doc="Two images of different grids (1,4,6) and (1,8,4) in one prompt; deepstack [0,2] of 3 blocks; "
            "8x8 pos-embed table interpolated down to 4x6 and up/down to 8x4. Special ids low in the vocab.",
    ),
    "video": dict(
        seed=2008,
        text=text_cfg(vocab=199, hidden=64, inter=128, layers=2, heads=4, kv=2, head_dim=16, mrope=[4, 2, 2]),
        vision=vision_cfg(depth=2, hidden=32, inter=64, heads=4, out=64, n_pos=16, deepstack=[1]),
        special=ids(199, vision_start=150, vision_end=151, image=152, video=153, im_start=154, im_end=155,
                    endoftext=156),
        tie=True, dtype="float32",
        prompt=[("text", 4), ("video", 0), ("text", 3)], images=[], videos=[(2, 4, 6)],
        # arbitrary text ids standing for the processor's timestamp strings, one list per temporal patch
        timestamps=[[60, 61, 62], [63, 64, 62]],
        doc="A 4-frame video: video_grid_thw (2,4,6) = 2 temporal patches of 4x6 patches (6 merged tokens each). "
            "Layout as transformers 5.23 writes it: <vs> [ts <vs> pads <ve>] x2 <ve> (the template's outer "
            "vision_start/end stay). Timestamp text before each temporal patch (ids [60,61,62] for '<0.2 seconds>', [63,64,62] for "
            "'<1.5 seconds>': what the processor writes for frames [0,2,5,7] of an 8-frame 4-fps clip "
            "sampled at fps 2). ViT heads 4 (head_dim 8).",
    ),
    "video_image": dict(
        seed=2007,
        text=text_cfg(vocab=233, hidden=64, inter=128, layers=3, heads=4, kv=2, head_dim=16, mrope=[4, 2, 2]),
        vision=vision_cfg(depth=3, hidden=32, inter=64, heads=2, out=64, n_pos=64, deepstack=[0, 1, 2]),
        special=ids(233, vision_start=220, vision_end=221, image=222, video=223, im_start=224, im_end=225,
                    endoftext=226),
        tie=True, dtype="float32",
        prompt=[("text", 2), ("video", 0), ("text", 2), ("image", 0), ("text", 2)],
        images=[(1, 4, 4)], videos=[(2, 4, 4)],
        timestamps=[[30, 31, 32], [33, 34, 32]],
        doc="A video BEFORE an image in one prompt: checks that deepstack features are merged in sequence "
            "order (transformers scatters image and video deepstack rows into one joint tensor by mask). "
            "Deepstack [0,1,2] on 3 text layers.",
    ),
    "untied": dict(
        seed=2050,  # greedy emits eos (<|endoftext|> 236) as its 14th token and stops
        text=text_cfg(vocab=241, hidden=64, inter=96, layers=2, heads=4, kv=1, head_dim=32, mrope=[6, 5, 5],
                      theta=1e6, tie=False),
        vision=vision_cfg(depth=2, hidden=32, inter=64, heads=2, out=64, n_pos=16, deepstack=[0]),
        special=ids(241, vision_start=230, vision_end=231, image=232, video=233, im_start=234, im_end=235,
                    endoftext=236),
        tie=False, dtype="float32",
        prompt=[("text", 4), ("image", 0), ("text", 5)], images=[(1, 4, 8)], videos=[],
        doc="tie_word_embeddings false (separate lm_head.weight). head_dim 32 with mrope_section [6,5,5] "
            "(the real [24,20,20] pattern scaled: H at 1,4,..,13, W at 2,5,..,14, T elsewhere incl. 15), "
            "rope_theta 1e6, heads 4 / kv 1 (MQA). Greedy decoding emits eos (endoftext 236) as its 14th "
            "token and stops: generated_ids has 14 entries, the last being the eos.",
    ),
    "bf16": dict(
        seed=2001,
        text=text_cfg(vocab=211, hidden=64, inter=128, layers=2, heads=4, kv=2, head_dim=16, mrope=[4, 2, 2]),
        vision=vision_cfg(depth=2, hidden=32, inter=64, heads=2, out=64, n_pos=16, deepstack=[0, 1]),
        special=ids(211, vision_start=200, vision_end=201, image=202, video=203, im_start=204, im_end=205,
                    endoftext=206),
        tie=True, dtype="bfloat16",
        prompt=[("text", 3), ("image", 0), ("text", 3)], images=[(1, 6, 6)], videos=[],
        doc="Weights saved as bf16. Goldens computed in fp32 from the bf16-rounded weights (every parameter "
            "rounded to bf16 and back before the forward), so loading the bf16 file and upcasting to f32 "
            "must reproduce the fp32 goldens exactly.",
    ),
}


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------

def build_config(case):
    sp = case["special"]
    cfg = Qwen3VLConfig(
        text_config=dict(case["text"], bos_token_id=sp["endoftext"], eos_token_id=sp["im_end"],
                         pad_token_id=None),
        vision_config=case["vision"],
        image_token_id=sp["image"], video_token_id=sp["video"],
        vision_start_token_id=sp["vision_start"], vision_end_token_id=sp["vision_end"],
        tie_word_embeddings=case["tie"],
    )
    return cfg


@torch.no_grad()
def init_weights(model, seed):
    """Deterministic, O(1)-scale random weights (HF's std-0.02 init gives near-uniform logits, whose
    argmax is fragile).  Norm weights ~ 1 + 0.2 N, biases ~ 0.1 N, token embeddings 0.25 N, pos_embed
    0.5 N, an untied lm_head N(0,1), other matrices N(0, 1/fan_in)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith(".bias"):
            v = 0.1 * r
        elif p.dim() == 1:  # RMSNorm / LayerNorm / q_norm / k_norm weights
            v = 1.0 + 0.2 * r
        elif "embed_tokens" in name:
            v = 0.25 * r  # small next to the layers' residual updates, else tied greedy repeats the last token
        elif name == "lm_head.weight":
            v = r
        elif "pos_embed" in name:
            v = 0.5 * r
        else:
            fan_in = p[0].numel()
            v = r / fan_in ** 0.5
        p.copy_(v)


def make_prompt(case, rng):
    sp = case["special"]
    special = set(sp.values())
    lo = 0
    pool = [i for i in range(lo, case["text"]["vocab_size"]) if i not in special]
    seq, types = [], []
    for kind, arg in case["prompt"]:
        if kind == "text":
            for _ in range(arg):
                seq.append(pool[int(torch.randint(len(pool), (1,), generator=rng))])
                types.append(0)
        elif kind == "image":
            t, h, w = case["images"][arg]
            seq += [sp["vision_start"]] + [sp["image"]] * (t * h * w // 4) + [sp["vision_end"]]
            types += [0] + [1] * (t * h * w // 4) + [0]
        elif kind == "video":
            # transformers 5.23 replaces only the template's <|video_pad|>, so the template's own
            # <|vision_start|> ... <|vision_end|> stays around the per-temporal-patch blocks.
            t, h, w = case["videos"][arg]
            seq.append(sp["vision_start"])
            types.append(0)
            for k in range(t):
                ts = case["timestamps"][k]
                seq += ts
                types += [0] * len(ts)
                seq += [sp["vision_start"]] + [sp["video"]] * (h * w // 4) + [sp["vision_end"]]
                types += [0] + [2] * (h * w // 4) + [0]
            seq.append(sp["vision_end"])
            types.append(0)
    return torch.tensor([seq], dtype=torch.long), torch.tensor([types], dtype=torch.long)


def make_pixels(grids, rng):
    n = sum(t * h * w for t, h, w in grids)
    return torch.rand((n, 3 * 2 * 16 * 16), generator=rng, dtype=torch.float32) * 2.0 - 1.0


# --------------------------------------------------------------------------------------------
# Running transformers
# --------------------------------------------------------------------------------------------

class Hooks:
    def __init__(self):
        self.handles, self.store = [], {}

    def out(self, module, key, index=None):
        def f(_m, _args, output):
            o = output[0] if isinstance(output, tuple) else output
            self.store.setdefault(key, []).append(o.detach().clone())
        self.handles.append(module.register_forward_hook(f))

    def inp(self, module, key):
        def f(_m, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            self.store.setdefault(key, []).append(x.detach().clone())
        self.handles.append(module.register_forward_pre_hook(f, with_kwargs=True))

    def remove(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def vision_goldens(model, prefix, pixels, grid, out):
    vis = model.model.visual
    hk = Hooks()
    hk.out(vis.patch_embed, "patch_embed")
    hk.inp(vis.blocks[0], "block_in")
    for i, b in enumerate(vis.blocks):
        hk.out(b, f"block{i}")
    feats = model.model.get_image_features(pixels, grid, return_dict=True)
    hk.remove()
    s = hk.store
    out[f"{prefix}_patch_embed"] = s["patch_embed"][0]
    # position embedding actually added (block input minus patch embedding); also recomputed below
    out[f"{prefix}_pos_embed"] = s["block_in"][0] - s["patch_embed"][0]
    idx, wts = get_vision_interpolation_indices_and_weights(
        grid, num_grid_per_side=vis.num_grid_per_side, mode=vis.interpolation_mode,
        align_corners=vis.interpolation_align_corners, spatial_merge_size=vis.spatial_merge_size)
    pe = (vis.pos_embed(idx) * wts[:, :, None]).sum(1)
    assert torch.equal(pe, out[f"{prefix}_pos_embed"]) or torch.allclose(pe, out[f"{prefix}_pos_embed"], atol=1e-6)
    out[f"{prefix}_pos_embed"] = pe
    out[f"{prefix}_pos_interp_indices"] = idx
    out[f"{prefix}_pos_interp_weights"] = wts.to(torch.float32)
    out[f"{prefix}_vit_block_out"] = torch.stack([s[f"block{i}"][0] for i in range(len(vis.blocks))])
    out[f"{prefix}_embeds"] = torch.cat(feats.pooler_output, 0)
    for k, f in enumerate(feats.deepstack_features):
        out[f"{prefix}_deepstack_{k}"] = torch.cat(f, 0)


def model_inputs(g):
    kw = dict(input_ids=g["input_ids"], mm_token_type_ids=g["mm_token_type_ids"])
    if "pixel_values" in g:
        kw.update(pixel_values=g["pixel_values"], image_grid_thw=g["image_grid_thw"])
    if "pixel_values_videos" in g:
        kw.update(pixel_values_videos=g["pixel_values_videos"], video_grid_thw=g["video_grid_thw"])
    return kw


@torch.no_grad()
def run_case(name, case):
    cfg = build_config(case)
    model = Qwen3VLForConditionalGeneration._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    init_weights(model, case["seed"])
    if case["dtype"] == "bfloat16":
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))

    rng = torch.Generator().manual_seed(case["seed"] + 7)
    input_ids, mm_types = make_prompt(case, rng)
    g = {"input_ids": input_ids, "mm_token_type_ids": mm_types}
    if case["images"]:
        g["image_grid_thw"] = torch.tensor(case["images"], dtype=torch.long)
        g["pixel_values"] = make_pixels(case["images"], rng)
    if case["videos"]:
        g["video_grid_thw"] = torch.tensor(case["videos"], dtype=torch.long)
        g["pixel_values_videos"] = make_pixels(case["videos"], rng)

    out = {}
    if case["images"]:
        vision_goldens(model, "image", g["pixel_values"], g["image_grid_thw"], out)
    if case["videos"]:
        vision_goldens(model, "video", g["pixel_values_videos"], g["video_grid_thw"], out)

    pos, deltas = model.model.get_rope_index(
        input_ids, mm_token_type_ids=mm_types, image_grid_thw=g.get("image_grid_thw"),
        video_grid_thw=g.get("video_grid_thw"))
    out["position_ids"] = pos[:, 0, :]
    out["rope_deltas"] = deltas.reshape(1)

    # Full prompt forward, with hooks on the language model.
    lm = model.model.language_model
    hk = Hooks()
    hk.inp(lm.layers[0], "hidden_in")
    for i, layer in enumerate(lm.layers):
        hk.out(layer, f"layer{i}")
    hk.out(lm.norm, "final_norm")
    model.model.rope_deltas = None
    res = model(**model_inputs(g))
    hk.remove()
    s = hk.store
    out["logits"] = res.logits[0]
    out["inputs_embeds"] = s["hidden_in"][0][0]
    out["layer_out"] = torch.stack([s[f"layer{i}"][0][0] for i in range(len(lm.layers))])
    out["final_norm"] = s["final_norm"][0][0]

    # Greedy continuation through generate() (KV cache, decode positions from rope_deltas).
    sp = case["special"]
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=N_NEW, eos_token_id=[sp["im_end"], sp["endoftext"]],
                               pad_token_id=sp["endoftext"], bos_token_id=sp["endoftext"],
                               output_logits=True, return_dict_in_generate=True)
    model.model.rope_deltas = None
    gout = model.generate(**model_inputs(g), generation_config=gen_cfg)
    new = gout.sequences[0, input_ids.shape[1]:]
    out["generated_ids"] = new.clone()
    out["generated_logits"] = torch.stack([l[0] for l in gout.logits])
    # Top-1 margins of the greedy steps (how robust the golden argmax is).
    top2 = out["generated_logits"].topk(2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1])

    # Sanity: the prompt forward's last row is the first generated step's logits.
    d0 = (out["generated_logits"][0] - out["logits"][-1]).abs().max().item()
    # Sanity: one no-cache forward over prompt + generated agrees (same positions, argmax).
    full = torch.cat([input_ids, new[None, :-1]], dim=1)
    g2 = dict(g, input_ids=full, mm_token_type_ids=torch.cat(
        [mm_types, torch.zeros((1, new.shape[0] - 1), dtype=torch.long)], dim=1))
    model.model.rope_deltas = None
    res2 = model(**model_inputs(g2))
    S = input_ids.shape[1]
    nc = res2.logits[0, S - 1:]
    dgen = (nc - out["generated_logits"]).abs().max().item()
    assert torch.equal(nc.argmax(-1), new), "no-cache argmax differs from generate()"
    pos2, _ = model.model.get_rope_index(full, mm_token_type_ids=g2["mm_token_type_ids"],
                                         image_grid_thw=g.get("image_grid_thw"),
                                         video_grid_thw=g.get("video_grid_thw"))
    dec_pos = torch.arange(S, S + new.shape[0] - 1) + out["rope_deltas"]
    assert torch.equal(pos2[:, 0, S:], dec_pos[None].expand(3, -1)), "decode positions != arange + rope_delta"

    gold = {k: v.contiguous() for k, v in g.items()}
    gold["input_ids"] = gold["input_ids"][0]
    gold["mm_token_type_ids"] = gold["mm_token_type_ids"][0]
    gold.update({k: v.contiguous() for k, v in out.items()})
    info = dict(seq_len=S, max_abs_gen0_vs_prompt=d0, max_abs_nocache_vs_generate=dgen,
                min_top1_margin=margins.min().item(), n_generated=int(new.shape[0]))
    return model, gold, gen_cfg, info


def write_case(name, case, model, gold, gen_cfg):
    d = os.path.join(HERE, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    save_model = model
    if case["dtype"] == "bfloat16":
        save_model = model.to(torch.bfloat16)
    save_model.save_pretrained(d)
    if case["dtype"] == "bfloat16":
        model.to(torch.float32)
    # generation_config.json shaped like the real one (sampling defaults of the Instruct models);
    # the goldens themselves are greedy (do_sample=False passed explicitly).
    sp = case["special"]
    real_like = GenerationConfig(bos_token_id=sp["endoftext"], pad_token_id=sp["endoftext"],
                                 eos_token_id=[sp["im_end"], sp["endoftext"]], do_sample=True,
                                 temperature=0.7, top_p=0.8, top_k=20)
    real_like.save_pretrained(d)
    save_file(gold, os.path.join(d, "golden.safetensors"),
              # one metadata key: safetensors writes several in random order (bytes would churn)
              metadata={"golden": json.dumps({"case": name, "transformers": transformers.__version__,
                                              "torch": torch.__version__, "doc": case["doc"]}, sort_keys=True)})


@torch.no_grad()
def check_case(name):
    """Reload the folder as the Rust runtime would (config + safetensors, upcast to f32) and check
    the goldens are reproduced bit for bit."""
    d = os.path.join(HERE, name)
    gold = load_file(os.path.join(d, "golden.safetensors"))
    model = Qwen3VLForConditionalGeneration.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    g = {k: gold[k][None] if k in ("input_ids", "mm_token_type_ids") else gold[k]
         for k in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw", "pixel_values_videos",
                   "video_grid_thw") if k in gold}
    model.model.rope_deltas = None
    res = model(**model_inputs(g))
    ok_logits = torch.equal(res.logits[0], gold["logits"])
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=N_NEW,
                               eos_token_id=model.generation_config.eos_token_id,
                               pad_token_id=model.generation_config.pad_token_id)
    model.model.rope_deltas = None
    seq = model.generate(**model_inputs(g), generation_config=gen_cfg)
    ok_gen = torch.equal(seq[0, gold["input_ids"].shape[0]:], gold["generated_ids"])
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    return ok_logits, ok_gen, sizes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="only reload and verify the committed fixtures")
    ap.add_argument("cases", nargs="*", help="subset of cases (default: all)")
    a = ap.parse_args()
    names = a.cases or list(CASES)
    ok = True
    for name in names:
        case = CASES[name]
        if not a.check:
            model, gold, gen_cfg, info = run_case(name, case)
            write_case(name, case, model, gold, gen_cfg)
            print(f"[{name}] " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in info.items()))
        ok_l, ok_g, sizes = check_case(name)
        ok &= ok_l and ok_g
        print(f"[{name}] reload: logits bit-exact={ok_l}, greedy equal={ok_g}; sizes={sizes}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
