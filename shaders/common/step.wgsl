// The values that change from one decode step to the next, written by the host once per step
// (crate/kernels/step.rs): recorded dispatches read them here, so their own parameters and
// bind groups never change. Bound read-only as `now`; the attention's workgroup counts at
// byte 16 are also its indirect dispatch arguments.

struct Step {
    // Cache rows before this step's first token.
    past: u32,
    // Decode attention: key splits and keys per split, and (16..28) its workgroup counts.
    splits: u32,
    split_len: u32,
    _p0: u32,
    attn_x: u32,
    attn_y: u32,
    attn_z: u32,
    // Sampling: history length (the chosen token is also written at history[hist_len]),
    // where the presence penalty starts, the filters, and the uniform draw.
    hist_len: u32,
    presence_from: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    repetition_penalty: f32,
    presence_penalty: f32,
    u: f32,
    // Token rows of the rotary table.
    rows: u32,
    // cos [rows, head_dim / 2], then sin [rows, head_dim / 2].
    rot: array<f32>,
}
