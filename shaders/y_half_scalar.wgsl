// ---- y in f16 / bf16, any C and row start (row r at y_base + r * y_stride, written where it
// lies): a word may hold the end of one row and the start
// of the next, written by different invocations, so a shared word is written half by half
// with atomic and/or (each touches only its own 16 bits); words wholly inside one store4 are
// stored whole. -------------------------------------------------------------------------------

// y: (rows, C) row-major output, as words
@group(0) @binding(2) var<storage, read_write> y: array<atomic<u32>>;

fn put_half_y(i: u32, h: u32) {
    let sh = (i % 2u) * 16u;
    atomicAnd(&y[i / 2u], ~(0xffffu << sh));
    atomicOr(&y[i / 2u], h << sh);
}

fn store4(row: u32, j: u32, v: vec4<f32>) {
    let base = params.y_base + row * params.y_stride;
    let c = 4u * j;
    let i = base + c;
    if i % 2u == 0u && c + 4u <= params.cols {
        atomicStore(&y[i / 2u], narrow1_y(v.x) | (narrow1_y(v.y) << 16u));
        atomicStore(&y[i / 2u + 1u], narrow1_y(v.z) | (narrow1_y(v.w) << 16u));
        return;
    }
    for (var k = 0u; k < 4u; k++) {
        if c + k < params.cols {
            put_half_y(i + k, narrow1_y(v[k]));
        }
    }
}

fn store1(row: u32, c: u32, v: f32) {
    put_half_y(params.y_base + row * params.y_stride + c, narrow1_y(v));
}
