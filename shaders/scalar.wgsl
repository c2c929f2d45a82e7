// ---- load/store variant: any C. Four scalars per step, lanes past the row end read as -inf
// (they add exactly nothing to the stats) and are never written. ---------------------------

// x (declared in the header): (rows, C) row-major
// y: (rows, C) row-major output
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

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

// Cross-entropy family only (unused elsewhere):
// weight: (C,) class weights
@group(0) @binding(6) var<storage, read> weight: array<f32>;
// q: (rows, C) probability targets
@group(0) @binding(7) var<storage, read> q: array<f32>;

fn lane_valid4(j: u32) -> vec4<bool> {
    let c = 4u * j;
    return vec4<u32>(c, c + 1u, c + 2u, c + 3u) < vec4<u32>(params.cols);
}

fn load1(row: u32, c: u32) -> f32 {
    return x[params.x_base + row * params.x_stride + c];
}

fn weight1(c: u32) -> f32 {
    return weight[c];
}

// Lanes past the row end read as 0 (they carry no weight).
fn loadw4(j: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        if 4u * j + k < params.cols {
            v[k] = weight[4u * j + k];
        }
    }
    return v;
}

fn loadq4(row: u32, j: u32) -> vec4<f32> {
    let base = row * params.cols;
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        if 4u * j + k < params.cols {
            v[k] = q[base + 4u * j + k];
        }
    }
    return v;
}
