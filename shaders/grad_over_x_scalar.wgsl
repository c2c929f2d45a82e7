// ---- where a gradient goes: back over the logits in x, with x's layout (in place, scalar) ---

fn store_grad4(row: u32, j: u32, v: vec4<f32>) {
    let base = params.x_base + row * params.x_stride;
    for (var k = 0u; k < 4u; k++) {
        if 4u * j + k < params.cols {
            x[base + 4u * j + k] = v[k];
        }
    }
}

fn store_grad1(row: u32, c: u32, v: f32) {
    x[params.x_base + row * params.x_stride + c] = v;
}
