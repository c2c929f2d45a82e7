// ---- where a gradient goes: back over f16 / bf16 logits in x, with x's layout (in place,
// four elements = two words, owned by the invocation that read them) -------------------------

fn store_grad4(row: u32, j: u32, v: vec4<f32>) {
    x[(params.x_base + row * params.x_stride) / 4u + j] = vec2<u32>(
        narrow1_x(v.x) | (narrow1_x(v.y) << 16u),
        narrow1_x(v.z) | (narrow1_x(v.w) << 16u),
    );
}

fn store_grad1(row: u32, c: u32, v: f32) {
    let i = params.x_base + row * params.x_stride + c;
    let k = i / 4u;
    let hw = (i / 2u) % 2u;
    let sh = (i % 2u) * 16u;
    x[k][hw] = (x[k][hw] & ~(0xffffu << sh)) | (narrow1_x(v) << sh);
}
