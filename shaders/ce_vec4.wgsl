// ---- cross-entropy family only (unused elsewhere), C % 4 == 0: vec4 weights and targets ----

// weight: (C,) class weights, read as vec4
@group(0) @binding(6) var<storage, read> weight: array<vec4<f32>>;
// q: (rows, C) probability targets, read as vec4
@group(0) @binding(7) var<storage, read> q: array<vec4<f32>>;

fn weight1(c: u32) -> f32 {
    return weight[c / 4u][c % 4u];
}

fn loadw4(j: u32) -> vec4<f32> {
    return weight[j];
}

fn loadq4(row: u32, j: u32) -> vec4<f32> {
    return q[row * params.cols_v + j];
}
