// ---- y in f32, rows 16-byte aligned: vec4 stores -------------------------------------------

// y: (rows, C) row-major output, written as vec4
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

fn store4(row: u32, j: u32, v: vec4<f32>) {
    y[params.y_base / 4u + row * params.cols_v + j] = v;
}

fn store1(row: u32, c: u32, v: f32) {
    let i = params.y_base + row * params.cols + c;
    y[i / 4u][i % 4u] = v;
}
