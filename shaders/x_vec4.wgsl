// ---- x in f32, C % 4 == 0 and every row 16-byte aligned: vec4 loads -----------------------

// x (declared in the header): (rows, C) row-major, read as (rows, C/4) vec4
// (x_base, x_stride and y_base are multiples of 4 whenever this variant is chosen.)

// No lanes past a row's end.
const PADDED: bool = false;

fn load4(row: u32, j: u32) -> vec4<f32> {
    return x[(params.x_base + row * params.x_stride) / 4u + j];
}

fn load1(row: u32, c: u32) -> f32 {
    let i = params.x_base + row * params.x_stride + c;
    return x[i / 4u][i % 4u];
}

fn lane_valid4(j: u32) -> vec4<bool> {
    return vec4<bool>(true);
}
