// ---- y in f32, any C: scalar stores, lanes past the row end never written -----------------

// y: (rows, C) row-major output
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn store4(row: u32, j: u32, v: vec4<f32>) {
    let base = params.y_base + row * params.cols;
    let c = 4u * j;
    for (var k = 0u; k < 4u; k++) {
        if c + k < params.cols {
            y[base + c + k] = v[k];
        }
    }
}

fn store1(row: u32, c: u32, v: f32) {
    y[params.y_base + row * params.cols + c] = v;
}
