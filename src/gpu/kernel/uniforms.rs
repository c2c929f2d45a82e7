//! The uniform structs the kernels read, declared once here for Rust and checked against the
//! WGSL declarations (`struct Params` in shaders/prelude.wgsl, `CeParams` in
//! shaders/cross_entropy.wgsl, `SParams` in shaders/surrogate_common.wgsl) by the reflection
//! test in `tests.rs`: same field names in the same order, at the same byte offsets, of the
//! same scalar type, same size. Every field is a 4-byte scalar, so the uniform layout rules
//! put them where `repr(C)` does.

use crate::scale::ExpScale;

/// Declares a `repr(C)` uniform struct and, for the drift test, its field table.
macro_rules! uniform {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }

        impl $name {
            /// `(name, byte offset, scalar type)` of each field, in order.
            #[cfg(test)]
            pub const FIELDS: &'static [(&'static str, usize, &'static str)] = &[
                $((stringify!($field), std::mem::offset_of!($name, $field), stringify!($ty))),*
            ];
        }
    };
}

uniform! {
    /// The prelude's `params`, bound by every kernel (80 bytes).
    Params {
        rows: u32,
        cols: u32,
        cols_v: u32,
        segs: u32,
        seg_len: u32,
        groups_x: u32,
        temperature: f32,
        /// `h` of the exponent `fma(x, h, −m·h)·c` (see `crate::scale`; 2⁶⁴ for tiny `T`).
        exp_h: f32,
        neg_inf: f32,
        pos_inf: f32,
        nan: f32,
        x_base: u32,
        x_stride: u32,
        y_base: u32,
        /// `c = κ·log₂e/h`: `exp(κ(x − m))` is evaluated as `exp2(fma(x, h, −m·h)·c)`.
        exp_c: f32,
        /// `κ/h`, for log-domain outputs.
        exp_c_log: f32,
        /// `h` again: a second uniform of the same value (see `shifted` in the prelude).
        exp_h2: f32,
        /// 0 (see `keep` in the prelude).
        zero: u32,
        y_stride: u32,
        _pad2: u32,
    }
}

uniform! {
    /// Cross-entropy's `ce` (32 bytes).
    CeParams {
        softcap: f32,
        sigma: f32,
        /// `sigma` again (see `shifted` in the prelude for why two).
        sigma2: f32,
        _pad3: u32,
        /// The `CE_*` bits, for reports (the shader uses its compile-time copy).
        flags: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

uniform! {
    /// The surrogates' `sp` (96 bytes).
    SParams {
        n: u32,
        flags: u32,
        kappa: f32,
        sign: f32,
        a: f32,
        u: f32,
        margin: f32,
        f1: f32,
        inv_d: f32,
        p: u32,
        /// 1/2, 1/4 and 2⁻⁹, each twice (see `SParams` in the shader for why).
        half: f32,
        half2: f32,
        quarter: f32,
        quarter2: f32,
        small_h: f32,
        small_h2: f32,
        /// Power-mean max: `1/p`.
        inv_p: f32,
        /// Rows: `κ = kappa·kappa_r` (see `Kappa::split`).
        kappa_r: f32,
        /// Power-mean max: `−200/p`, the clamp of a term's log ratio (normal for every
        /// finite `p`, where `1/p` may be subnormal).
        lo_p: f32,
        /// Power-mean max: `−200/(p − 1)`, the gradient's clamp (0 for `p = 1`).
        lo_pm1: f32,
        /// Power-mean max: `(p − 1)/p`.
        q_p: f32,
        _pad3: u32,
        _pad4: u32,
        _pad5: u32,
    }
}

uniform! {
    /// The matrix products' `mm` (64 bytes): `C[M, N] = A[M, K]·B[K, N]`, each operand at any
    /// strides (elements from its binding's start), see shaders/matmul.wgsl.
    MParams {
        m: u32,
        n: u32,
        k: u32,
        a_base: u32,
        a_rs: u32,
        a_cs: u32,
        b_base: u32,
        b_rs: u32,
        b_cs: u32,
        c_base: u32,
        c_rs: u32,
        /// `MM_ACC` (add to `C`), `MM_BIAS` (add `bias[bias_base + col]`).
        flags: u32,
        tiles_n: u32,
        bias_base: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// [`MParams::flags`]: add the product to `C`.
pub(crate) const MM_ACC: u32 = 1;
/// [`MParams::flags`]: add the bias of each column.
pub(crate) const MM_BIAS: u32 = 2;

/// Size of [`Params`] in bytes.
pub(crate) const PARAMS_BYTES: u64 = std::mem::size_of::<Params>() as u64;

impl Params {
    /// For temperature `T` (the exponent's scale is `1/T`).
    pub fn new(rows: usize, cols: usize, segs: u32, seg_len: u32, temperature: f32) -> Self {
        Params::with_scale(
            rows,
            cols,
            segs,
            seg_len,
            temperature,
            &ExpScale::temperature(temperature, std::f64::consts::LOG2_E),
        )
    }

    /// With the exponent's scale given (`κ` other than `1/T`, e.g. Boltzmann's `|β|`).
    pub fn with_scale(
        rows: usize,
        cols: usize,
        segs: u32,
        seg_len: u32,
        temperature: f32,
        es: &ExpScale,
    ) -> Self {
        Params {
            rows: rows as u32,
            cols: cols as u32,
            cols_v: cols.div_ceil(4) as u32,
            segs,
            seg_len,
            groups_x: 0,
            temperature,
            exp_h: es.h,
            neg_inf: f32::NEG_INFINITY,
            pos_inf: f32::INFINITY,
            nan: f32::NAN,
            x_base: 0,
            x_stride: cols as u32,
            y_base: 0,
            exp_c: es.c,
            exp_c_log: es.c_log,
            exp_h2: es.h,
            zero: 0,
            y_stride: cols as u32,
            _pad2: 0,
        }
    }

    /// Places x and y inside their bindings (see `encode::Slice`).
    pub fn placed(mut self, x_base: u32, x_stride: usize, y_base: u32) -> Self {
        self.x_base = x_base;
        self.x_stride = x_stride as u32;
        self.y_base = y_base;
        self
    }

    /// Elements between output row starts, for the half-precision stores, which write a
    /// device output where it lies (`cols` unless set: packed).
    pub fn y_strided(mut self, y_stride: usize) -> Self {
        self.y_stride = y_stride as u32;
        self
    }
}

impl Default for SParams {
    fn default() -> Self {
        SParams {
            n: 0,
            flags: 0,
            kappa: 0.0,
            sign: 0.0,
            a: 0.0,
            u: 0.0,
            margin: 0.0,
            f1: 0.0,
            inv_d: 0.0,
            p: 0,
            half: 0.5,
            half2: 0.5,
            quarter: 0.25,
            quarter2: 0.25,
            small_h: 1.0 / 512.0,
            small_h2: 1.0 / 512.0,
            inv_p: 0.0,
            kappa_r: 0.0,
            lo_p: 0.0,
            lo_pm1: 0.0,
            q_p: 0.0,
            _pad3: 0,
            _pad4: 0,
            _pad5: 0,
        }
    }
}
