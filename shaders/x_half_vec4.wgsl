// ---- x in f16 / bf16, C % 4 == 0 and rows 4-element aligned: four elements are two words ---

// x (declared in the header): (rows, C) row-major, read as (rows, C/4) vec2<u32>
// (x_base, x_stride and y_base are multiples of 4 whenever this variant is chosen.)

const PADDED: bool = false;

fn load4(row: u32, j: u32) -> vec4<f32> {
    let w = x_pair((params.x_base + row * params.x_stride) / 4u + j);
    return vec4<f32>(widen2_x(w.x), widen2_x(w.y));
}

fn load1(row: u32, c: u32) -> f32 {
    let i = params.x_base + row * params.x_stride + c;
    return widen1_of(x_pair(i / 4u)[(i / 2u) % 2u], i);
}

fn lane_valid4(j: u32) -> vec4<bool> {
    return vec4<bool>(true);
}
