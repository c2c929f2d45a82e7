// ---- load/store variant: C % 4 == 0, so every row starts 16-byte aligned: vec4 access ------

// x (declared in the header): (rows, C) row-major, read as (rows, C/4) vec4
// y: (rows, C) row-major output, written as vec4
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

// (x_base, x_stride and y_base are multiples of 4 whenever this variant is chosen.)

// No lanes past a row's end.
const PADDED: bool = false;
fn load4(row: u32, j: u32) -> vec4<f32> {
    return x[(params.x_base + row * params.x_stride) / 4u + j];
}

fn store4(row: u32, j: u32, v: vec4<f32>) {
    y[params.y_base / 4u + row * params.cols_v + j] = v;
}

fn store1(row: u32, c: u32, v: f32) {
    let i = params.y_base + row * params.cols + c;
    y[i / 4u][i % 4u] = v;
}

// Cross-entropy family only (unused elsewhere):
// weight: (C,) class weights, read as vec4
@group(0) @binding(6) var<storage, read> weight: array<vec4<f32>>;
// q: (rows, C) probability targets, read as vec4
@group(0) @binding(7) var<storage, read> q: array<vec4<f32>>;

fn lane_valid4(j: u32) -> vec4<bool> {
    return vec4<bool>(true);
}

fn load1(row: u32, c: u32) -> f32 {
    let i = params.x_base + row * params.x_stride + c;
    return x[i / 4u][i % 4u];
}

fn weight1(c: u32) -> f32 {
    return weight[c / 4u][c % 4u];
}

fn loadw4(j: u32) -> vec4<f32> {
    return weight[j];
}

fn loadq4(row: u32, j: u32) -> vec4<f32> {
    return q[row * params.cols_v + j];
}
