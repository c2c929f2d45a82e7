// ---- x in f32, any C: four scalars per step; lanes past the row end read as -inf (they add
// exactly nothing to the stats) and are never written. --------------------------------------

// x (declared in the header): (rows, C) row-major

// The last vec4 of a row may have lanes past its end.
const PADDED: bool = true;

fn load4(row: u32, j: u32) -> vec4<f32> {
    let base = params.x_base + row * params.x_stride;
    let c = 4u * j;
    var v = vec4<f32>(params.neg_inf);
    for (var k = 0u; k < 4u; k++) {
        if c + k < params.cols {
            v[k] = x[base + c + k];
        }
    }
    return v;
}

fn load1(row: u32, c: u32) -> f32 {
    return x[params.x_base + row * params.x_stride + c];
}

fn lane_valid4(j: u32) -> vec4<bool> {
    let c = 4u * j;
    return vec4<u32>(c, c + 1u, c + 2u, c + 3u) < vec4<u32>(params.cols);
}
