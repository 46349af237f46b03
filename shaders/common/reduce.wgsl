// Workgroup-wide reductions over a 1-D workgroup of WG invocations (WG a power of two,
// declared by the includer's constants). Entry points take `lane: Lane` as a parameter.
// With SUBGROUPS each subgroup reduces in registers and one value per subgroup meets in
// workgroup memory (subgroup k = invocations k*size..: true of every 1-D dispatch we know of);
// without, a shared-memory tree.

#if SUBGROUPS
struct Lane {
    @builtin(local_invocation_index) idx: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
}
#else
struct Lane {
    @builtin(local_invocation_index) idx: u32,
}
#endif

var<workgroup> red_scratch: array<f32, WG>;

fn red_combine(a: f32, b: f32, is_max: bool) -> f32 {
    return select(a + b, max(a, b), is_max);
}

// Sum (or max) of `v` over the workgroup, returned to every invocation. Must be reached by
// all invocations (it has barriers).
fn wg_reduce(v: f32, lane: Lane, is_max: bool) -> f32 {
#if SUBGROUPS
    let s = select(subgroupAdd(v), subgroupMax(v), is_max);
    if (lane.sg_lane == 0u) {
        red_scratch[lane.idx / lane.sg_size] = s;
    }
    workgroupBarrier();
    var t = red_scratch[0];
    for (var i = 1u; i < (WG + lane.sg_size - 1u) / lane.sg_size; i++) {
        t = red_combine(t, red_scratch[i], is_max);
    }
#else
    red_scratch[lane.idx] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane.idx < s) {
            red_scratch[lane.idx] = red_combine(red_scratch[lane.idx], red_scratch[lane.idx + s], is_max);
        }
        workgroupBarrier();
    }
    let t = red_scratch[0];
#endif
    // The next reduction may overwrite the scratch only after everyone has read it.
    workgroupBarrier();
    return t;
}

fn wg_sum(v: f32, lane: Lane) -> f32 {
    return wg_reduce(v, lane, false);
}

fn wg_max(v: f32, lane: Lane) -> f32 {
    return wg_reduce(v, lane, true);
}
