// ---- where a gradient goes: back over the logits in x, with x's layout (in place, vec4) -----

fn store_grad4(row: u32, j: u32, v: vec4<f32>) {
    x[(params.x_base + row * params.x_stride) / 4u + j] = v;
}

fn store_grad1(row: u32, c: u32, v: f32) {
    let i = params.x_base + row * params.x_stride + c;
    x[i / 4u][i % 4u] = v;
}
