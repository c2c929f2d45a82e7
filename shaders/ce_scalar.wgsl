// ---- cross-entropy family only (unused elsewhere), any C: scalar weights and targets ------

// weight: (C,) class weights
@group(0) @binding(6) var<storage, read> weight: array<f32>;
// q: (rows, C) probability targets
@group(0) @binding(7) var<storage, read> q: array<f32>;

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
