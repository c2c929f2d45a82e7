// ---- where a gradient goes: y (rows packed from y_base) -------------------------------------

fn store_grad4(row: u32, j: u32, v: vec4<f32>) {
    store4(row, j, v);
}

fn store_grad1(row: u32, c: u32, v: f32) {
    store1(row, c, v);
}
