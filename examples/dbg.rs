use smoothmax::*;
use ndarray::Array2;
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of four uniforms, centred and scaled to unit variance).
    pub fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

pub fn inputs() -> Array2<f32> {
    let cols = 37;
    let mut rng = Rng(7);
    let mut x = Array2::<f32>::zeros((6, cols));
    for j in 0..cols {
        x[[0, j]] = (rng.normal() * 3.0) as f32;
        x[[1, j]] = (rng.normal() * 3.0) as f32;
        let sign = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
        x[[2, j]] = sign * f32::from_bits((rng.next_u64() % 40) as u32);
        x[[3, j]] = (rng.normal() * 1e37) as f32;
        x[[4, j]] = if rng.unit() < 0.3 {
            f32::NEG_INFINITY
        } else {
            (rng.normal() * 3.0) as f32
        };
        x[[5, j]] = 1e7 + (rng.normal() * 3.0).round() as f32;
    }
    x[[0, 5]] += 20.0;
    for j in [3, 9, 30] {
        x[[1, j]] = 12.5;
    }
    x[[3, 2]] = f32::MAX;
    x[[3, 3]] = -f32::MAX;
    x
}


fn main() {
    let g = Gpu::new().unwrap();
    let x = inputs();
    let x0 = x.slice(ndarray::s![0..1, ..]).to_owned();
    for beta in [1e38f32, 1e30, 3.0] {
        let a = g.boltzmann_max(x0.view(), beta).unwrap();
        let r = Reference.boltzmann_max(x0.view(), beta).unwrap();
        println!("b {beta:e}\ngpu {:?} {:?}\nref {:?} {:?}", a.value.to_vec(), &a.grad.as_slice().unwrap()[..8], r.value.to_vec(), &r.grad.as_slice().unwrap()[..8]);
    }
}
