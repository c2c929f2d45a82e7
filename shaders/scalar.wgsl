// ---- load/store variant: any C. Four scalars per step, lanes past the row end read as -inf
// (they add exactly nothing to the stats) and are never written. ---------------------------

// x: (rows, C) row-major
@group(0) @binding(1) var<storage, read> x: array<f32>;
// y: (rows, C) row-major output
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn load4(row: u32, j: u32) -> vec4<f32> {
    let base = row * params.cols;
    let c = 4u * j;
    var v = vec4<f32>(params.neg_inf);
    for (var k = 0u; k < 4u; k++) {
        if c + k < params.cols {
            v[k] = x[base + c + k];
        }
    }
    return v;
}

fn store4(row: u32, j: u32, v: vec4<f32>) {
    let base = row * params.cols;
    let c = 4u * j;
    for (var k = 0u; k < 4u; k++) {
        if c + k < params.cols {
            y[base + c + k] = v[k];
        }
    }
}
