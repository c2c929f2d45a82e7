// ---- where a gradient goes: back over f16 / bf16 logits in x, any layout (in place): each
// element's 16 bits through atomic and/or, since a word may be shared with another row -------

fn put_half_x(i: u32, h: u32) {
    let sh = (i % 2u) * 16u;
    atomicAnd(&x[i / 2u], ~(0xffffu << sh));
    atomicOr(&x[i / 2u], h << sh);
}

fn store_grad4(row: u32, j: u32, v: vec4<f32>) {
    let base = params.x_base + row * params.x_stride;
    for (var k = 0u; k < 4u; k++) {
        if 4u * j + k < params.cols {
            put_half_x(base + 4u * j + k, narrow1_x(v[k]));
        }
    }
}

fn store_grad1(row: u32, c: u32, v: f32) {
    put_half_x(params.x_base + row * params.x_stride + c, narrow1_x(v));
}
