// ---- y in f16 / bf16, rows 4-element aligned (row r at y_base + r * y_stride, written where
// it lies): four elements are two whole words, written by the one invocation that owns them ------------------------------------------------------------

// y: (rows, C) row-major output, written as (rows, C/4) vec2<u32>
@group(0) @binding(2) var<storage, read_write> y: array<vec2<u32>>;

fn store4(row: u32, j: u32, v: vec4<f32>) {
    y[(params.y_base + row * params.y_stride) / 4u + j] = vec2<u32>(
        narrow1_y(v.x) | (narrow1_y(v.y) << 16u),
        narrow1_y(v.z) | (narrow1_y(v.w) << 16u),
    );
}

// Only after this invocation's own store4 of the same four elements (the target entry of a
// gradient row): nobody else writes this word.
fn store1(row: u32, c: u32, v: f32) {
    let i = params.y_base + row * params.y_stride + c;
    let k = i / 4u;
    let hw = (i / 2u) % 2u;
    let sh = (i % 2u) * 16u;
    y[k][hw] = (y[k][hw] & ~(0xffffu << sh)) | (narrow1_y(v) << sh);
}
