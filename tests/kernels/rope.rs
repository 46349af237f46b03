use qwen3_vl_webgpu::gpu::Encoder;
use qwen3_vl_webgpu::kernels::rope::*;
use qwen3_vl_webgpu::testing::{assert_close, Rng};

use crate::gpus;

// Both sides compute a·c − b·s and b·c + a·s in f32; the GPU may fuse a multiply-add, which
// changes the result by at most about an ulp of the larger product: 1e-6 of the largest value.
const TOL: f32 = 1e-6;

/// The axis (0 T, 1 H, 2 W) whose position each frequency of a table row rotates with, found
/// from a token whose three positions differ: entry j must equal cos(pos[axis] · inv_freq[j]).
fn axes(section: [usize; 3], head_dim: usize) -> Vec<usize> {
    let pos = [1000u32, 2000, 3000];
    let (cos, sin) = mrope_table(&[pos], section, 5e6, head_dim);
    let inv = inv_freq(5e6, head_dim);
    (0..head_dim / 2)
        .map(|j| {
            let angle = |a: usize| pos[a] as f32 * inv[j];
            let hits: Vec<usize> = (0..3)
                .filter(|&a| cos[j] == (angle(a) as f64).cos() as f32 && sin[j] == (angle(a) as f64).sin() as f32)
                .collect();
            assert_eq!(hits.len(), 1, "frequency {j}: matches axes {hits:?}");
            hits[0]
        })
        .collect()
}

#[test]
fn inv_freq_matches_hand_values() {
    // θ = 5e6, d = 128 (text) and θ = 1e4, d = 32 (ViT, head_dim 64), as torch gives them. Its
    // three roundings (exponent, power, reciprocal) leave j = 1 and j = 32 an ulp above the
    // once-rounded 1/θ^(2j/d) = 0.78582996, 0.0004472136.
    let t = inv_freq(5e6, 128);
    assert_eq!(t.len(), 64);
    assert_eq!([t[0], t[1], t[32], t[63]], [1.0, 0.78583, 0.00044721362, 2.5450797e-7]);
    let v = inv_freq(1e4, 32);
    assert_eq!(v.len(), 16);
    assert_eq!([v[0], v[1], v[8], v[15]], [1.0, 0.56234133, 0.01, 0.00017782794]);
}

#[test]
fn mrope_interleaves_axes_like_transformers() {
    // Qwen3-VL: section [24, 20, 20], head_dim 128. H takes j = 1, 4, …, 58, W takes
    // j = 2, 5, …, 59, T the rest (j = 0, 3, …, 57 and 60..63).
    let a = axes([24, 20, 20], 128);
    for (j, &axis) in a.iter().enumerate() {
        let want = match j % 3 {
            1 if j < 60 => 1,
            2 if j < 60 => 2,
            _ => 0,
        };
        assert_eq!(axis, want, "frequency {j}");
    }
    assert_eq!([0, 1, 2].map(|x| a.iter().filter(|&&y| y == x).count()), [24, 20, 20]);
    // The tiny test model's [4, 2, 2] with head_dim 16, spelled out.
    assert_eq!(axes([4, 2, 2], 16), [0, 1, 2, 0, 1, 2, 0, 0]);
    // Sections past head_dim/2 are cut, as the slices are: [8, 8, 8] with head_dim 16 → T H W ….
    assert_eq!(axes([8, 8, 8], 16), [0, 1, 2, 0, 1, 2, 0, 1]);
}

#[test]
fn text_positions_give_plain_rope() {
    // A text token (t = h = w = p) rotates every frequency by p · inv_freq.
    let (cos, sin) = mrope_table(&[[0, 0, 0], [7, 7, 7], [32767, 32767, 32767]], [24, 20, 20], 5e6, 128);
    let inv = inv_freq(5e6, 128);
    for (r, p) in [0u32, 7, 32767].into_iter().enumerate() {
        for j in 0..64 {
            let a = (p as f32 * inv[j]) as f64;
            assert_eq!((cos[r * 64 + j], sin[r * 64 + j]), (a.cos() as f32, a.sin() as f32), "p {p} j {j}");
        }
    }
    assert!(cos[..64].iter().all(|&c| c == 1.0) && sin[..64].iter().all(|&s| s == 0.0));
}

#[test]
fn vision_tokens_are_block_major() {
    // A 4×6 patch grid merged 2×2: 2×3 blocks, row-major, each block's 2×2 patches row-major.
    #[rustfmt::skip]
    let want = [
        (0, 0), (0, 1), (1, 0), (1, 1),   (0, 2), (0, 3), (1, 2), (1, 3),   (0, 4), (0, 5), (1, 4), (1, 5),
        (2, 0), (2, 1), (3, 0), (3, 1),   (2, 2), (2, 3), (3, 2), (3, 3),   (2, 4), (2, 5), (3, 4), (3, 5),
    ];
    assert_eq!(block_major(4, 6, 2), want);
    assert_eq!(block_major(2, 3, 1), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
}

#[test]
fn vision_table_is_row_then_col_angles() {
    // head_dim 8: two frequencies f = [1, 1/100]; a patch (r, c) gets [r, r/100, c, c/100].
    // Grid (2, 4, 6) repeats its 24 patches for both frames; then grid (1, 2, 2) follows.
    let (cos, sin) = vision_rope_table(&[[2, 4, 6], [1, 2, 2]], 2, 8);
    assert_eq!(cos.len(), (48 + 4) * 4);
    let coords: Vec<_> = [block_major(4, 6, 2), block_major(4, 6, 2), block_major(2, 2, 2)].concat();
    for (k, &(r, c)) in coords.iter().enumerate() {
        let angles = [r as f32, r as f32 * 0.01, c as f32, c as f32 * 0.01];
        for (j, a) in angles.into_iter().enumerate() {
            assert_eq!(cos[k * 4 + j], (a as f64).cos() as f32, "token {k} j {j}");
            assert_eq!(sin[k * 4 + j], (a as f64).sin() as f32, "token {k} j {j}");
        }
    }
}

/// Rotates `x` (`shape`, table rows = shape[0]) on the GPU and on the CPU; compares all of x,
/// so whatever must stay untouched (v, other heads) is checked too.
fn check(rng: &mut Rng, shape: &[usize], cos: &[f32], sin: &[f32], heads: usize, offset: usize) {
    let half = cos.len() / shape[0];
    let x = rng.vec(shape.iter().product(), 2.0);
    let mut want = x.clone();
    apply_rope_ref(&mut want, cos, sin, half, heads, offset);
    for gpu in gpus() {
        let gx = gpu.upload_f32(&x, shape).unwrap();
        let gc = gpu.upload_f32(cos, &[shape[0], half]).unwrap();
        let gs = gpu.upload_f32(sin, &[shape[0], half]).unwrap();
        let mut enc = Encoder::new(gpu);
        apply_rope(&mut enc, &gx, &gc, &gs, heads, offset);
        enc.submit();
        let got = gpu.read_f32_blocking(&gx).unwrap();
        let what = format!("rope {shape:?} heads {heads} offset {offset} {:?}", gpu.caps.profile);
        assert_close(&what, &got, &want, TOL);
    }
}

#[test]
fn rope_matches_reference_at_odd_sizes() {
    let mut rng = Rng::new(11);
    for &(t, heads, head_dim) in &[(1, 1, 2), (7, 3, 10), (3, 5, 66), (33, 2, 6)] {
        let (cos, sin) = (rng.vec(t * head_dim / 2, 1.0), rng.vec(t * head_dim / 2, 1.0));
        check(&mut rng, &[t, heads, head_dim], &cos, &sin, heads, 0);
        // A subset of heads in the middle of each row.
        if heads > 2 {
            check(&mut rng, &[t, heads, head_dim], &cos, &sin, heads - 2, head_dim);
        }
    }
}

#[test]
fn rope_text_q_and_k_with_mrope_tables() {
    // 2B decoder: q 16 heads, k 8 heads of 128, positions as an image block would give them.
    let mut rng = Rng::new(12);
    let t = 37;
    let pos: Vec<[u32; 3]> = (0..t as u32).map(|i| [5, 5 + i / 6, 5 + i % 6]).collect();
    let (cos, sin) = mrope_table(&pos, [24, 20, 20], 5e6, 128);
    check(&mut rng, &[t, 16, 128], &cos, &sin, 16, 0);
    check(&mut rng, &[t, 8, 128], &cos, &sin, 8, 0);
}

#[test]
fn rope_packed_vit_qkv_in_place() {
    // ViT qkv [n, 3, 16, 64]: q and k as one run of 32 heads, or k alone at offset 16·64;
    // v must come back untouched.
    let mut rng = Rng::new(13);
    let grids = [[1, 4, 6], [2, 2, 2]];
    let n: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
    let (cos, sin) = vision_rope_table(&grids, 2, 64);
    check(&mut rng, &[n, 3, 16, 64], &cos, &sin, 32, 0);
    check(&mut rng, &[n, 3, 16, 64], &cos, &sin, 16, 16 * 64);
}
