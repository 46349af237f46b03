use qwen3_vl_webgpu::gpu::{DType, Encoder, Gpu, POISON};
use qwen3_vl_webgpu::kernels::sample::*;
use qwen3_vl_webgpu::testing::{assert_close, Rng};

use crate::gpus;

const VOCAB: usize = 151936;

/// `sample` on `logits[row]` (`logits` is `[rows, vocab]`), fresh tensors each call since the
/// penalties work in place; the output, the scratch and the history's next slot start
/// poisoned, and the token must also land in that slot (what a decode loop's next step reads).
fn gpu_sample(gpu: &Gpu, logits: &[f32], rows: usize, row: usize, history: &[u32], presence_from: usize, params: &SampleParams) -> u32 {
    let vocab = logits.len() / rows;
    let gl = gpu.upload_f32(logits, &[rows, vocab]).unwrap();
    let slots: Vec<u32> = history.iter().copied().chain([POISON]).collect();
    let gh = gpu.upload_u32(&slots, &[slots.len()]).unwrap();
    let seen = gpu.poisoned(DType::U32, &[seen_words(vocab)]).unwrap();
    let out = gpu.poisoned(DType::U32, &[1]).unwrap();
    let mut enc = Encoder::new(gpu);
    sample(&mut enc, &gl, row, &History { ids: &gh, len: history.len(), presence_from }, params, &seen, &out).unwrap();
    enc.submit();
    let token = gpu.read_u32_blocking(&out).unwrap()[0];
    let after = gpu.read_u32_blocking(&gh).unwrap();
    assert_eq!(after[..history.len()], *history, "the history is kept");
    assert_eq!(after[history.len()], token, "the token is appended to the history");
    token
}

fn gpu_argmax(gpu: &Gpu, logits: &[f32], rows: usize, row: usize) -> u32 {
    let gl = gpu.upload_f32(logits, &[rows, logits.len() / rows]).unwrap();
    let out = gpu.poisoned(DType::U32, &[1]).unwrap();
    let mut enc = Encoder::new(gpu);
    argmax(&mut enc, &gl, row, &out);
    enc.submit();
    gpu.read_u32_blocking(&out).unwrap()[0]
}

/// Asserts that `got` is a token `sample` may return for `u` under `probs`: kept by the
/// filters, with `u` inside its CDF interval up to 1e-5. The GPU sums in another order (f32)
/// than the reference (f64), so a `u` that close to a boundary may pick the neighbour; the
/// sums differ by ~1e-6 of the total, hence 1e-5.
fn assert_allowed(what: &str, probs: &[f64], u: f32, got: u32) {
    let got = got as usize;
    assert!(got < probs.len() && probs[got] > 0.0, "{what}: token {got} is filtered out (u = {u})");
    let before: f64 = probs[..got].iter().sum();
    let after = before + probs[got];
    let u = u as f64;
    assert!(before - 1e-5 <= u && u <= after + 1e-5, "{what}: u = {u} outside [{before}, {after}] of token {got}");
}

/// Logits spread like a language model's: a few clear favourites over a long tail.
fn lm_logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.sym(4.0) + if rng.below(50) == 0 { rng.uniform() * 8.0 } else { 0.0 }).collect()
}

#[test]
fn argmax_matches_reference() {
    let mut rng = Rng::new(10);
    for gpu in gpus() {
        for &(rows, vocab) in &[(1, 1), (1, 7), (3, 1000), (2, 257), (1, VOCAB)] {
            let x = rng.vec(rows * vocab, 5.0);
            for row in 0..rows {
                let want = argmax_ref(&x[row * vocab..(row + 1) * vocab]);
                assert_eq!(gpu_argmax(gpu, &x, rows, row), want, "argmax {rows}x{vocab} row {row} {:?}", gpu.caps.profile);
            }
        }
        // Ties go to the lowest index, within an invocation (300 and 556 are 256 apart) and
        // across; −inf entries are never chosen.
        let mut x = vec![f32::NEG_INFINITY; 1000];
        for i in [999, 556, 300, 301] {
            x[i] = 2.5;
        }
        x[5] = 1.0;
        assert_eq!(gpu_argmax(gpu, &x, 1, 0), 300);
        assert_eq!(argmax_ref(&x), 300);
    }
}

#[test]
fn hand_made_distributions_give_known_tokens() {
    // Probabilities 0.1, 0.2, 0.3, 0.4 (CDF 0.1, 0.3, 0.6, 1.0); each u sits well inside an
    // interval, so the GPU and the reference must both give exactly the token listed.
    let logits: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
    let p = |temperature, top_k, top_p, u| SampleParams { temperature, top_k, top_p, u, ..Default::default() };
    let cases = [
        (p(1.0, 0, 1.0, 0.05), 0),
        (p(1.0, 0, 1.0, 0.15), 1),
        (p(1.0, 0, 1.0, 0.45), 2),
        (p(1.0, 0, 1.0, 0.99), 3),
        // top-p 0.5 keeps {3, 2} (0.4 alone falls short): 3/7 = 0.4286 then 4/7.
        (p(1.0, 0, 0.5, 0.40), 2),
        (p(1.0, 0, 0.5, 0.45), 3),
        // top-p 0.35: 0.4 alone suffices.
        (p(1.0, 0, 0.35, 0.0), 3),
        (p(1.0, 2, 1.0, 0.40), 2),
        (p(1.0, 2, 1.0, 0.45), 3),
        // top-k 3 renormalises to 2/9, 3/9, 4/9; top-p 0.6 then keeps {3, 2}.
        (p(1.0, 3, 0.6, 0.42), 2),
        (p(1.0, 3, 0.6, 0.44), 3),
        // T = 0.5 squares the probabilities: CDF 1/30, 5/30, 14/30, 1.
        (p(0.5, 0, 1.0, 0.03), 0),
        (p(0.5, 0, 1.0, 0.10), 1),
        (p(0.5, 0, 1.0, 0.40), 2),
        (p(0.5, 0, 1.0, 0.50), 3),
    ];
    // Three tied maxima: top-k 1 keeps all three, uniformly.
    let tied = [1.0f32, 1.0, 1.0, 0.0];
    let tie_cases = [(p(1.0, 1, 1.0, 0.2), 0), (p(1.0, 1, 1.0, 0.5), 1), (p(1.0, 1, 1.0, 0.9), 2), (p(1.0, 0, 0.1, 0.9), 2)];
    for gpu in gpus() {
        for (x, cases) in [(&logits[..], &cases[..]), (&tied[..], &tie_cases[..])] {
            for (params, want) in cases {
                let what = format!("{x:?} {params:?} {:?}", gpu.caps.profile);
                assert_eq!(sample_ref(x, &[], 0, params), *want, "reference {what}");
                assert_eq!(gpu_sample(gpu, x, 1, 0, &[], 0, params), *want, "{what}");
            }
        }
    }
}

#[test]
fn penalties_change_the_winner_once_per_distinct_token() {
    let greedy = |repetition_penalty, presence_penalty| SampleParams { top_k: 1, repetition_penalty, presence_penalty, ..Default::default() };
    let mut pos = vec![0.0f32; 10];
    pos[5] = 2.0;
    pos[3] = 1.5;
    let neg: Vec<f32> = pos.iter().map(|v| v - 3.0).collect(); // 5: −1, 3: −1.5, rest −3
    // (logits, history, presence_from, params, token)
    type Case<'a> = (&'a [f32], &'a [u32], usize, SampleParams, u32);
    let cases: &[Case] = &[
        (&pos, &[], 0, greedy(1.0, 0.0), 5),
        // 2/1.2 = 1.67 still wins; penalising each repeat (2/1.2³ = 1.16) would lose.
        (&pos, &[5, 5, 9, 5], 0, greedy(1.2, 0.0), 5),
        (&pos, &[5], 0, greedy(1.5, 0.0), 3),
        // Negative logits are multiplied: −1·1.6 < −1.5 (dividing would keep 5 ahead).
        (&neg, &[5, 7], 0, greedy(1.6, 0.0), 3),
        (&pos, &[5, 5], 0, greedy(1.0, 0.6), 3),
        // Only history[presence_from..] counts for presence: 5 is in the prompt part.
        (&pos, &[5, 3], 1, greedy(1.0, 0.6), 5),
        (&pos, &[3, 5], 1, greedy(1.0, 0.6), 3),
        // Ids past the vocabulary are ignored.
        (&pos, &[10, 1 << 20], 0, greedy(2.0, 1.0), 5),
    ];
    for gpu in gpus() {
        for (x, hist, from, params, want) in cases {
            let what = format!("history {hist:?} from {from} {params:?} {:?}", gpu.caps.profile);
            assert_eq!(sample_ref(x, hist, *from, params), *want, "reference {what}");
            assert_eq!(gpu_sample(gpu, x, 1, 0, hist, *from, params), *want, "{what}");
        }
    }
}

#[test]
fn penalties_apply_in_place_as_documented() {
    let mut rng = Rng::new(11);
    let (rows, vocab) = (2, 1000);
    let x = rng.vec(rows * vocab, 5.0);
    let hist: Vec<u32> = (0..300).map(|_| rng.below(vocab as u64 + 20) as u32).collect();
    let params = SampleParams { repetition_penalty: 1.3, presence_penalty: 0.7, u: 0.5, ..Default::default() };
    for gpu in gpus() {
        let gl = gpu.upload_f32(&x, &[rows, vocab]).unwrap();
        let gh = gpu.upload_u32(&hist, &[hist.len()]).unwrap();
        let seen = gpu.poisoned(DType::U32, &[seen_words(vocab)]).unwrap();
        let out = gpu.poisoned(DType::U32, &[1]).unwrap();
        let mut enc = Encoder::new(gpu);
        sample(&mut enc, &gl, 1, &History { ids: &gh, len: hist.len(), presence_from: 120 }, &params, &seen, &out).unwrap();
        enc.submit();
        let got = gpu.read_f32_blocking(&gl).unwrap();
        // Row 0 untouched; row 1 penalised once per token. Same f32 operations as the
        // reference, but a GPU may divide within 2.5 ulp: 1e-6.
        assert_eq!(&got[..vocab], &x[..vocab]);
        let want = penalized_ref(&x[vocab..], &hist, 120, &params);
        assert_close(&format!("penalised row {:?}", gpu.caps.profile), &got[vocab..], &want, 1e-6);
    }
}

#[test]
fn sample_matches_reference_for_random_u() {
    let mut rng = Rng::new(12);
    let qwen = SampleParams { temperature: 0.7, top_k: 20, top_p: 0.8, presence_penalty: 1.5, ..Default::default() };
    // Both routes: workgroup memory (rows ≤ 512, top-k ≤ 256, top-p alone when the largest
    // tokens hold its mass) and radix search over the row (top-k 300, flatter rows).
    let settings = [
        SampleParams::default(),
        qwen,
        SampleParams { top_p: 0.9, ..Default::default() },
        SampleParams { temperature: 1.3, top_k: 300, top_p: 0.95, ..Default::default() },
        SampleParams { temperature: 0.5, top_k: 50, ..Default::default() },
        SampleParams { repetition_penalty: 1.3, top_p: 0.7, ..qwen },
    ];
    let (mut total, mut differ) = (0, 0);
    for gpu in gpus() {
        for &(rows, vocab) in &[(1, 1), (1, 7), (1, 300), (2, 1000)] {
            for (s, settings) in settings.iter().enumerate() {
                let mut x = lm_logits(&mut rng, rows * vocab);
                if s == 5 {
                    // Ties everywhere, at the top-k and top-p boundaries too.
                    x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
                }
                let row = rows - 1;
                let hist: Vec<u32> = (0..40).map(|_| rng.below(vocab as u64) as u32).collect();
                let r = &x[row * vocab..];
                for _ in 0..8 {
                    let params = SampleParams { u: rng.uniform(), ..*settings };
                    let what = format!("{rows}x{vocab} {params:?} {:?}", gpu.caps.profile);
                    let got = gpu_sample(gpu, &x, rows, row, &hist, 10, &params);
                    assert_allowed(&what, &sample_probs_ref(r, &hist, 10, &params), params.u, got);
                    total += 1;
                    differ += usize::from(got != sample_ref(r, &hist, 10, &params));
                }
            }
        }
    }
    // Only a u within float noise of a boundary may differ: practically never.
    assert!(differ * 100 <= total, "{differ} of {total} tokens differ from the reference");
}

#[test]
fn many_ties_leave_workgroup_memory_for_the_search() {
    // A third of the row ties at the top: more than the 512 candidates workgroup memory holds,
    // so top-k ≤ 256 falls back on the radix search, and every tied token must stay.
    let mut rng = Rng::new(15);
    let x: Vec<f32> = (0..3000).map(|_| rng.below(3) as f32).collect();
    let tops: Vec<usize> = (0..x.len()).filter(|&i| x[i] == 2.0).collect();
    for gpu in gpus() {
        for (top_k, top_p) in [(20, 1.0), (20, 0.5), (0, 0.3), (256, 0.9)] {
            for _ in 0..3 {
                let params = SampleParams { top_k, top_p, u: rng.uniform(), ..Default::default() };
                let got = gpu_sample(gpu, &x, 1, 0, &[], 0, &params);
                // Equal masses: the CDF over the tied top tokens is uniform, and exact.
                let want = tops[(params.u * tops.len() as f32) as usize] as u32;
                assert_eq!(sample_ref(&x, &[], 0, &params), want, "reference {params:?}");
                assert_eq!(got, want, "{params:?} {:?}", gpu.caps.profile);
            }
        }
    }
}

#[test]
fn top_k_keeps_exactly_the_k_largest() {
    // k + 3 favourites of similar mass over a low tail: a u at the middle of a kept token's CDF
    // interval must give that token, the k-th largest (the first to go missing) included.
    let mut rng = Rng::new(17);
    let n = 5000;
    for gpu in gpus() {
        for k in [1u32, 5, 100, 200, 256] {
            let mut x = rng.vec(n, 1.0);
            for _ in 0..k + 3 {
                x[rng.below(n as u64) as usize] = 10.0 + rng.sym(0.5);
            }
            let params = SampleParams { top_k: k, ..Default::default() };
            let probs = sample_probs_ref(&x, &[], 0, &params);
            let kept: Vec<usize> = (0..n).filter(|&i| probs[i] > 0.0).collect();
            assert_eq!(kept.len(), k as usize);
            let kth = *kept.iter().min_by(|&&a, &&b| x[a].total_cmp(&x[b])).unwrap();
            for _ in 0..3 {
                let pick = kept[rng.below(kept.len() as u64) as usize];
                for i in [kth, pick] {
                    let u = (probs[..i].iter().sum::<f64>() + probs[i] / 2.0) as f32;
                    let got = gpu_sample(gpu, &x, 1, 0, &[], 0, &SampleParams { u, ..params });
                    assert_eq!(got as usize, i, "top_k {k}, u = {u} {:?}", gpu.caps.profile);
                }
            }
        }
    }
}

#[test]
fn top_p_alone_on_a_long_row() {
    // Top-p without top-k gathers the ~355 largest tokens: enough when 40 favourites hold
    // ~99% of the mass, not when the row is flat (then the radix search takes over).
    let mut rng = Rng::new(16);
    let n = 20000;
    let flat = rng.vec(n, 1.0);
    let mut peaked = rng.vec(n, 3.0);
    for _ in 0..40 {
        peaked[rng.below(n as u64) as usize] = 12.0 + rng.sym(1.0);
    }
    let (mut total, mut differ) = (0, 0);
    for gpu in gpus() {
        for (name, x) in [("flat", &flat), ("peaked", &peaked)] {
            for (temperature, top_p) in [(1.0, 0.9), (0.7, 0.5), (1.5, 0.97)] {
                for _ in 0..4 {
                    let params = SampleParams { temperature, top_p, u: rng.uniform(), ..Default::default() };
                    let what = format!("{name} {params:?} {:?}", gpu.caps.profile);
                    let got = gpu_sample(gpu, x, 1, 0, &[], 0, &params);
                    assert_allowed(&what, &sample_probs_ref(x, &[], 0, &params), params.u, got);
                    total += 1;
                    differ += usize::from(got != sample_ref(x, &[], 0, &params));
                }
            }
        }
    }
    assert!(differ * 20 <= total, "{differ} of {total} tokens differ from the reference");
}

#[test]
fn same_u_same_token_and_top_k_one_is_greedy() {
    let mut rng = Rng::new(13);
    let x = lm_logits(&mut rng, 1000);
    for gpu in gpus() {
        for _ in 0..4 {
            let params = SampleParams { temperature: 0.8, top_p: 0.95, u: rng.uniform(), ..Default::default() };
            let a = gpu_sample(gpu, &x, 1, 0, &[], 0, &params);
            assert_eq!(a, gpu_sample(gpu, &x, 1, 0, &[], 0, &params), "{params:?}");
            let greedy = SampleParams { top_k: 1, ..params };
            assert_eq!(gpu_sample(gpu, &x, 1, 0, &[], 0, &greedy), argmax_ref(&x), "{greedy:?}");
            // A temperature near 0 leaves all the mass on the (penalised) maximum.
            let hist = [argmax_ref(&x), 3, 4];
            let cold = SampleParams { temperature: 1e-6, repetition_penalty: 1.5, ..params };
            let want = argmax_ref(&penalized_ref(&x, &hist, 0, &cold));
            assert_eq!(gpu_sample(gpu, &x, 1, 0, &hist, 0, &cold), want, "{cold:?}");
        }
    }
}

#[test]
fn real_vocabulary() {
    let mut rng = Rng::new(14);
    let x = lm_logits(&mut rng, VOCAB);
    let hist: Vec<u32> = (0..2000).map(|_| rng.below(VOCAB as u64) as u32).collect();
    let qwen = SampleParams { temperature: 0.7, top_k: 20, top_p: 0.8, presence_penalty: 1.5, u: rng.uniform(), ..Default::default() };
    let wide = SampleParams { top_k: 0, top_p: 0.9, u: rng.uniform(), ..qwen };
    for gpu in gpus() {
        for params in [qwen, wide] {
            let what = format!("{VOCAB} {params:?} {:?}", gpu.caps.profile);
            let got = gpu_sample(gpu, &x, 1, 0, &hist, 500, &params);
            assert_allowed(&what, &sample_probs_ref(&x, &hist, 500, &params), params.u, got);
        }
        let greedy = SampleParams { top_k: 1, ..qwen };
        assert_eq!(gpu_sample(gpu, &x, 1, 0, &[], 0, &greedy), argmax_ref(&x));
    }
}

