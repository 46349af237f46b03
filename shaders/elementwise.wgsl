// Elementwise ops, one invocation per element, or per vec4 of elements with VEC4 (when the
// length divides by 4): the same code then runs on vec4s, the counts are in vec4s.
//   gelu_tanh: gelu with the tanh approximation (ViT MLPs, gelu_pytorch_tanh)
//   gelu_erf:  exact gelu, x/2 · (1 + erf(x/√2))             (patch mergers, nn.GELU())
//   add:       a += b                                          (residuals)
// The gelus write y, or x itself with INPLACE (a buffer cannot be bound twice when written).

#if VEC4
alias V = vec4<f32>;
#else
alias V = f32;
#endif

struct Params {
    // Elements (vec4s with VEC4) written.
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if INPLACE
@group(0) @binding(1) var<storage, read_write> x: array<V>;
#else
@group(0) @binding(1) var<storage, read> x: array<V>;
#endif
@group(0) @binding(2) var<storage, read_write> y: array<V>;
// add's operands; bindings are per entry point, so these may reuse x's and y's numbers.
@group(0) @binding(1) var<storage, read_write> a: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;

fn index(lid: u32, wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid;
}

// num · sigmoid(z) = num / (1 + e^(−z)), without overflow: e^88 is below f32's maximum, and
// past it the quotient is already ~0 at f32 precision.
fn div_sigmoid(num: V, z: V) -> V {
    return num / (1.0 + exp(min(-z, V(88.0))));
}

// erf(v) to 7e-8 absolute (1.2 ulp) in f32, from least-squares fits made for this file
// (fit error < 1e-9; the rest is f32 rounding, checked against a f64 erf):
//   |v| < 1:      v + v·P(v²), P(s) ≈ erf(√s)/√s − 1 (the 1 kept apart: less rounding)
//   1 ≤ |v| < 4:  1 − e^(−v²)·R(u), R(u) ≈ erfc(|v|)·e^(v²) at u = (|v| − 2.5)/1.5
//   |v| ≥ 4:      1 (erfc(4) = 1.5e-8 is below half an ulp of 1)
fn erf(v: V) -> V {
    let a = min(abs(v), V(4.0));
    let s = a * a;
    var pv = V(7.847262168070301e-05);
    pv = pv * s - 0.0008008193108253181;
    pv = pv * s + 0.0051880995742976665;
    pv = pv * s - 0.026853691786527634;
    pv = pv * s + 0.1128358244895935;
    pv = pv * s - 0.3761262595653534;
    pv = pv * s + 0.12837916612625122;
    let small = a + a * pv;
    let u = (max(a, V(1.0)) - 2.5) * (1.0 / 1.5);
    var r = V(-3.317911614431068e-05);
    r = r * u + 9.565836080582812e-05;
    r = r * u - 0.00015413195069413632;
    r = r * u + 0.0003697143110912293;
    r = r * u - 0.0010070917196571827;
    r = r * u + 0.0024242920335382223;
    r = r * u - 0.0055716331116855145;
    r = r * u + 0.012484594248235226;
    r = r * u - 0.02700497768819332;
    r = r * u + 0.056110888719558716;
    r = r * u - 0.11152104288339615;
    r = r * u + 0.21080635488033295;
    let large = select(1.0 - exp(-s) * r, V(1.0), a >= V(4.0));
    return sign(v) * select(large, small, a < V(1.0));
}

fn gelu_tanh_of(v: V) -> V {
    // 0.5·v·(1 + tanh(z)) = v·sigmoid(2z): the same function without tanh, whose WGSL
    // accuracy is loose and which may overflow to NaN for large arguments on some GPUs.
    let z = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    return div_sigmoid(v, 2.0 * z);
}

fn gelu_erf_of(v: V) -> V {
    return 0.5 * v * (1.0 + erf(v * 0.7071067811865476));
}

@compute @workgroup_size(WG)
fn gelu_tanh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= p.n) {
        return;
    }
#if INPLACE
    x[i] = gelu_tanh_of(x[i]);
#else
    y[i] = gelu_tanh_of(x[i]);
#endif
}

@compute @workgroup_size(WG)
fn gelu_erf(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= p.n) {
        return;
    }
#if INPLACE
    x[i] = gelu_erf_of(x[i]);
#else
    y[i] = gelu_erf_of(x[i]);
#endif
}

@compute @workgroup_size(WG)
fn add(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(lid, wg, nwg);
    if (i >= p.n) {
        return;
    }
    a[i] += b[i];
}
