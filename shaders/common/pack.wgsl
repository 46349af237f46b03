// Packed storage without shader-f16: f16 pairs in one u32 (element 2i in the low half), and
// int4 weights as eight nibbles per u32 (element 8i+j in bits 4j..4j+3).

// Element `i` of a packed-f16 array, given the word that holds it.
fn f16_pick(word: u32, i: u32) -> f32 {
    let v = unpack2x16float(word);
    return select(v.x, v.y, (i & 1u) == 1u);
}

// The eight unsigned nibbles of `word`, lowest first, as two vec4s.
fn nibbles_lo(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
}

fn nibbles_hi(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
}
