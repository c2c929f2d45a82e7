// ---- x in f16 / bf16, any C and any row start: element i is half i % 2 of word i / 2 -------
// (a row may start in the middle of a word). Lanes past the row end read as -inf.

// x (declared in the header): the words, read through x_word

const PADDED: bool = true;

fn load4(row: u32, j: u32) -> vec4<f32> {
    let base = params.x_base + row * params.x_stride;
    let c = 4u * j;
    var v = vec4<f32>(params.neg_inf);
    for (var k = 0u; k < 4u; k++) {
        if c + k < params.cols {
            let i = base + c + k;
            v[k] = widen1_of(x_word(i / 2u), i);
        }
    }
    return v;
}

fn load1(row: u32, c: u32) -> f32 {
    let i = params.x_base + row * params.x_stride + c;
    return widen1_of(x_word(i / 2u), i);
}

fn lane_valid4(j: u32) -> vec4<bool> {
    let c = 4u * j;
    return vec4<u32>(c, c + 1u, c + 2u, c + 3u) < vec4<u32>(params.cols);
}
