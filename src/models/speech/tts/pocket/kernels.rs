//! CPU kernels for the shapes Pocket TTS streams at, where candle's general matmul
//! (the `gemm` crate) is slow: a linear layer applied to a few rows (the flow LM and
//! its head step one frame at a time), as dot
//! products of each weight row with each input row, rows split across the current
//! rayon pool (the one `models::cpu_share` sizes).

use moshi::candle::{CpuStorage, Result, Storage, Tensor};
use rayon::prelude::*;

/// Rows of input up to which `linear_rows` is used (beyond, candle's matmul).
pub const MAX_ROWS: usize = 8;

/// Weight rows per rayon task.
const CHUNK: usize = 32;

/// Σ a[i]·b[i], in 32 lanes that autovectorise.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 32;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; L];
    let ca = a.chunks_exact(L);
    let cb = b.chunks_exact(L);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    let mut s = [0f32; 8];
    for (i, v) in acc.iter().enumerate() {
        s[i % 8] += v;
    }
    (s[0] + s[4]) + (s[1] + s[5]) + ((s[2] + s[6]) + (s[3] + s[7])) + tail
}

/// The dots of one weight row with four input rows, the weight read once.
#[inline(always)]
fn dot4(w: &[f32], x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32]) -> [f32; 4] {
    const L: usize = 32;
    let k = w.len();
    let (x0, x1, x2, x3) = (&x0[..k], &x1[..k], &x2[..k], &x3[..k]);
    let mut a = [[0f32; L]; 4];
    let chunks = w
        .chunks_exact(L)
        .zip(x0.chunks_exact(L))
        .zip(x1.chunks_exact(L))
        .zip(x2.chunks_exact(L))
        .zip(x3.chunks_exact(L));
    for ((((w, x0), x1), x2), x3) in chunks {
        for i in 0..L {
            a[0][i] += w[i] * x0[i];
            a[1][i] += w[i] * x1[i];
            a[2][i] += w[i] * x2[i];
            a[3][i] += w[i] * x3[i];
        }
    }
    let done = k - k % L;
    let mut r = [0f32; 4];
    for (j, (acc, x)) in a.iter().zip([x0, x1, x2, x3]).enumerate() {
        let mut s = [0f32; 8];
        for (i, v) in acc.iter().enumerate() {
            s[i % 8] += v;
        }
        let mut tail = 0f32;
        for i in done..k {
            tail += w[i] * x[i];
        }
        r[j] = (s[0] + s[4]) + (s[1] + s[5]) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
    }
    r
}

/// The dots of weight row `wr` with each row of `x` into `o` (one per row).
#[inline(always)]
fn row_dots(wr: &[f32], x: &[f32], k: usize, o: &mut [f32]) {
    let mut o4 = o.chunks_exact_mut(4);
    let mut x4 = x.chunks_exact(4 * k);
    for (o, x) in (&mut o4).zip(&mut x4) {
        let r = dot4(wr, &x[..k], &x[k..2 * k], &x[2 * k..3 * k], &x[3 * k..]);
        o.copy_from_slice(&r);
    }
    for (v, xr) in o4
        .into_remainder()
        .iter_mut()
        .zip(x4.remainder().chunks_exact(k))
    {
        *v = dot(wr, xr);
    }
}

/// `out[r·n + j] = Σ_k x[r·k + i] · w[j·k + i]` for `m` rows of `x`: `w` is (n, k)
/// row-major. Each weight row is read once for all rows of `x`.
pub fn linear_rows(w: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    let n = w.len() / k;
    let m = x.len() / k;
    debug_assert_eq!(out.len(), m * n);
    if m == 1 {
        out.par_chunks_mut(CHUNK)
            .zip(w.par_chunks(CHUNK * k))
            .for_each(|(o, wc)| {
                for (oj, wr) in o.iter_mut().zip(wc.chunks_exact(k)) {
                    *oj = dot(wr, x);
                }
            });
        return;
    }
    // Computed as (n, m), then transposed.
    let mut t = vec![0f32; n * m];
    t.par_chunks_mut(CHUNK * m)
        .zip(w.par_chunks(CHUNK * k))
        .for_each(|(o, wc)| {
            for (oj, wr) in o.chunks_exact_mut(m).zip(wc.chunks_exact(k)) {
                row_dots(wr, x, k, oj);
            }
        });
    for j in 0..n {
        for r in 0..m {
            out[r * n + j] = t[j * m + r];
        }
    }
}

/// `x` (…, k) times the transpose of `w` (n, k), f32 on the CPU, when `x` has at most
/// `MAX_ROWS` rows: `None` otherwise (or for other storage), for candle to do it.
pub fn linear(w: &Tensor, x: &Tensor) -> Result<Option<Tensor>> {
    let dims = x.dims();
    let Some(&k) = dims.last() else {
        return Ok(None);
    };
    let m = x.elem_count() / k.max(1);
    if m == 0 || m > MAX_ROWS || !w.is_contiguous() || w.rank() != 2 || w.dim(1)? != k {
        return Ok(None);
    }
    let n = w.dim(0)?;
    let xs: Vec<f32> = match x.flatten_all()?.to_vec1::<f32>() {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let (st, layout) = w.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(wv)) = &*st else {
        return Ok(None);
    };
    let off = layout.start_offset();
    let ws = &wv[off..off + n * k];
    let mut out = vec![0f32; m * n];
    linear_rows(ws, &xs, k, &mut out);
    drop(st);
    let mut shape = dims.to_vec();
    *shape.last_mut().unwrap_or(&mut 0) = n;
    Ok(Some(Tensor::from_vec(out, shape, x.device())?))
}

/// A weight matrix (n, k) in bfloat16 (the upper half of each f32), for the flow LM:
/// Kyutai publishes Pocket TTS's weights in bf16 and the package computes in f32 with
/// them, so keeping them in bf16 loses nothing, and a step, which reads every weight
/// once, reads half the bytes.
pub struct Bf16Rows {
    n: usize,
    k: usize,
    data: Vec<u16>,
}

/// f32 → bf16, rounding to nearest even (as PyTorch's `.to(torch.bfloat16)`): exact
/// for a value that came from bf16.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

impl Bf16Rows {
    /// `w`: (n, k) row-major.
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "Bf16Rows: weight of the wrong size");
        Self {
            n,
            k,
            data: w.iter().map(|&x| f32_to_bf16(x)).collect(),
        }
    }

    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&h| bf16_to_f32(h)).collect()
    }

    /// Rows `rows` widened to f32, row-major.
    pub fn rows_f32(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        self.data[rows.start * self.k..rows.end * self.k]
            .iter()
            .map(|&h| bf16_to_f32(h))
            .collect()
    }

    /// (rows, columns).
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }
}

/// Σ w[i]·x[i] with `w` in bf16, each weight widened to f32 as it is read.
#[inline(always)]
pub fn dot_bf16(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: both slices hold `n` values; AVX2 and FMA are enabled.
    unsafe {
        dot_bf16_avx2(&w[..n], &x[..n])
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    dot_bf16_portable(&w[..n], &x[..n])
}

/// `dot_bf16` without `std::arch`, in 16 lanes that autovectorise.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ),
    allow(dead_code)
)]
#[inline(always)]
fn dot_bf16_portable(w: &[u16], x: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (cw, cx) = (w.chunks_exact(L), x.chunks_exact(L));
    let (rw, rx) = (cw.remainder(), cx.remainder());
    for (a, b) in cw.zip(cx) {
        for i in 0..L {
            acc[i] += bf16_to_f32(a[i]) * b[i];
        }
    }
    let tail: f32 = rw.iter().zip(rx).map(|(a, b)| bf16_to_f32(*a) * b).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn dot_bf16_avx2(w: &[u16], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            let h = _mm_loadu_si128(wp.add(i + 8 * j) as *const __m128i);
            let wf = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            *a = _mm256_fmadd_ps(wf, _mm256_loadu_ps(xp.add(i + 8 * j)), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        let h = _mm_loadu_si128(wp.add(i) as *const __m128i);
        let wf = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        acc[0] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(xp.add(i)), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut total = (lanes[0] + lanes[4])
        + (lanes[1] + lanes[5])
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    while i < n {
        total += bf16_to_f32(*wp.add(i)) * *xp.add(i);
        i += 1;
    }
    total
}

/// `linear_rows` with the weight in bf16: one input row reads the weight straight from
/// bf16; several widen each weight row once and share it.
pub fn linear_rows_bf16(w: &Bf16Rows, x: &[f32], out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let m = x.len() / k;
    debug_assert_eq!(out.len(), m * n);
    if m == 1 {
        out.par_chunks_mut(CHUNK)
            .zip(w.data.par_chunks(CHUNK * k))
            .for_each(|(o, wc)| {
                for (oj, wr) in o.iter_mut().zip(wc.chunks_exact(k)) {
                    *oj = dot_bf16(wr, x);
                }
            });
        return;
    }
    let mut t = vec![0f32; n * m];
    t.par_chunks_mut(CHUNK * m)
        .zip(w.data.par_chunks(CHUNK * k))
        .for_each(|(o, wc)| {
            let mut row = vec![0f32; k];
            for (oj, wr) in o.chunks_exact_mut(m).zip(wc.chunks_exact(k)) {
                for (d, &h) in row.iter_mut().zip(wr) {
                    *d = bf16_to_f32(h);
                }
                row_dots(&row, x, k, oj);
            }
        });
    for j in 0..n {
        for r in 0..m {
            out[r * n + j] = t[j * m + r];
        }
    }
}

/// Weight rows per block of `gemm_shifted`'s micro-kernel.
const RB: usize = 8;
/// Columns per block of the micro-kernel (8 rows × 16 columns, in two halves of 8
/// ymm accumulators).
pub const TB: usize = 16;

/// A weight matrix (rows, q) packed for `gemm_shifted`: blocks of `RB` rows stored
/// column by column (`[block][q][RB]`), the last block padded with zero rows.
pub struct PackedRows {
    rows: usize,
    q: usize,
    data: Vec<f32>,
}

impl PackedRows {
    /// `w`: (rows, q) row-major.
    pub fn new(w: &[f32], rows: usize, q: usize) -> Self {
        assert_eq!(w.len(), rows * q, "PackedRows: weight of the wrong size");
        let mut data = vec![0f32; rows.div_ceil(RB) * q * RB];
        for r in 0..rows {
            let block = &mut data[(r / RB) * q * RB..];
            for j in 0..q {
                block[j * RB + r % RB] = w[r * q + j];
            }
        }
        Self { rows, q, data }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.q
    }
}

/// `RB` rows × `TB` columns from column `t0`: Σ_j w[·][j] · x[offs[j] + t0 ..]. The
/// caller has checked that every window lies inside `x`.
#[inline(always)]
fn micro(wb: &[f32], x: &[f32], offs: &[usize], t0: usize) -> [[f32; TB]; RB] {
    debug_assert!(wb.len() >= offs.len() * RB);
    debug_assert!(offs.iter().all(|&o| o + t0 + TB <= x.len()));
    // AVX2 also on AVX-512 machines: the AVX-512 intrinsics need Rust 1.89.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: the windows and weight blocks are in bounds (above); AVX2 and FMA are
    // enabled.
    unsafe {
        micro_avx2(wb, x, offs, t0)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        let mut acc = [[0f32; TB]; RB];
        for (wj, &o) in wb.chunks_exact(RB).zip(offs) {
            let xs = &x[o + t0..o + t0 + TB];
            for r in 0..RB {
                for i in 0..TB {
                    acc[r][i] += wj[r] * xs[i];
                }
            }
        }
        acc
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn micro_avx2(wb: &[f32], x: &[f32], offs: &[usize], t0: usize) -> [[f32; TB]; RB] {
    use std::arch::x86_64::*;
    let mut out = [[0f32; TB]; RB];
    // Two halves of 8 columns: 8 accumulators each, within the 16 registers.
    for half in 0..2 {
        let mut a = [_mm256_setzero_ps(); RB];
        let (w, xp) = (wb.as_ptr(), x.as_ptr().add(t0 + 8 * half));
        for (j, &o) in offs.iter().enumerate() {
            let xv = _mm256_loadu_ps(xp.add(o));
            let wj = w.add(j * RB);
            for (r, acc) in a.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(*wj.add(r)), xv, *acc);
            }
        }
        for (o, acc) in out.iter_mut().zip(a) {
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * half), acc);
        }
    }
    out
}

/// Multiply-adds below which `gemm_shifted` stays on the calling thread.
const PAR_MACS: usize = 1 << 18;

/// `out[r·tn + t] (=|+=) bias[r] + Σ_j w[r][j] · x[offs[j] + t]` for every row `r` of
/// `w` and `t < tn`: a matrix product whose right-hand rows are windows of `x`, so a
/// convolution needs no im2col copy (row j of the product is input channel c shifted
/// by tap i's offset). `x` must hold `offs[j] + tn.next_multiple_of(TB)` values for each
/// j (columns past `tn` are computed and dropped). Rows are split across the rayon pool.
pub fn gemm_shifted(
    w: &PackedRows,
    x: &[f32],
    offs: &[usize],
    tn: usize,
    bias: Option<&[f32]>,
    accumulate: bool,
    out: &mut [f32],
) {
    assert_eq!(
        offs.len(),
        w.q,
        "gemm_shifted: offsets for each column of w"
    );
    assert_eq!(
        out.len(),
        w.rows * tn,
        "gemm_shifted: output of the wrong size"
    );
    let padded = tn.next_multiple_of(TB);
    assert!(
        offs.iter().all(|&o| o + padded <= x.len()),
        "gemm_shifted: a window reaches past the input"
    );
    if tn == 0 || w.rows == 0 {
        return;
    }
    let q = w.q;
    let run = |b: usize, wb: &[f32], o: &mut [f32]| {
        let r0 = b * RB;
        let nr = o.len() / tn;
        for t0 in (0..tn).step_by(TB) {
            let acc = micro(wb, x, offs, t0);
            let nt = TB.min(tn - t0);
            for (r, a) in acc.iter().enumerate().take(nr) {
                let bv = bias.map_or(0.0, |b| b[r0 + r]);
                let dst = &mut o[r * tn + t0..r * tn + t0 + nt];
                if accumulate {
                    dst.iter_mut().zip(a).for_each(|(d, v)| *d += v + bv);
                } else {
                    dst.iter_mut().zip(a).for_each(|(d, v)| *d = v + bv);
                }
            }
        }
    };
    let blocks = w.rows.div_ceil(RB);
    if w.rows * q * tn < PAR_MACS || rayon::current_num_threads() < 2 {
        for (b, (o, wb)) in out
            .chunks_mut(RB * tn)
            .zip(w.data.chunks_exact(q * RB))
            .enumerate()
        {
            run(b, wb, o);
        }
        return;
    }
    // A few tasks per thread, whole blocks each.
    let per = blocks.div_ceil(4 * rayon::current_num_threads()).max(1);
    out.par_chunks_mut(per * RB * tn)
        .zip(w.data.par_chunks(per * q * RB))
        .enumerate()
        .for_each(|(g, (o, wg))| {
            for (i, (o, wb)) in o
                .chunks_mut(RB * tn)
                .zip(wg.chunks_exact(q * RB))
                .enumerate()
            {
                run(g * per + i, wb, o);
            }
        });
}

/// ELU (alpha 1) of one value, for callers that fuse it into a copy.
#[inline(always)]
pub fn elu_one(x: f32) -> f32 {
    elu1(x)
}

/// `(2^n · (1 + e) - 1, …)` split as `(e, n)`: exp(x) = 2^n · (1 + e), |r| ≤ ln2/2,
/// Cephes' polynomial (about 1 ulp), branch-free so that loops over it vectorise.
#[inline(always)]
fn exp_parts(x: f32) -> (f32, f32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    (p * r * r + r, n)
}

/// 2^n for an integral `n` in the normal range.
#[inline(always)]
fn pow2(n: f32) -> f32 {
    f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `torch.nn.ELU(alpha=1)`: x for x > 0, exp(x) - 1 otherwise (no cancellation near 0:
/// exp(x) - 1 = 2^n·e + (2^n - 1)).
#[inline(always)]
fn elu1(x: f32) -> f32 {
    let (e, n) = exp_parts(x.min(0.0));
    let s = pow2(n);
    let m = s * e + (s - 1.0);
    if x > 0.0 {
        x
    } else {
        m
    }
}

/// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), with
/// 1 + tanh(u) = 2 - 2/(exp(2u) + 1).
#[inline(always)]
fn gelu1(x: f32) -> f32 {
    const C: f32 = 0.797_884_6;
    let u = C * x * (1.0 + 0.044_715 * x * x);
    let (e, n) = exp_parts((2.0 * u).clamp(-80.0, 80.0));
    let ex = pow2(n) * (1.0 + e);
    0.5 * x * (2.0 - 2.0 / (ex + 1.0))
}

/// `f` over every element of an f32 CPU tensor, into a new one; `None` for other
/// tensors.
fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Result<Option<Tensor>> {
    if !x.is_contiguous() {
        return Ok(None);
    }
    let n = x.elem_count();
    let (st, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*st else {
        return Ok(None);
    };
    let off = layout.start_offset();
    let src = &v[off..off + n];
    let mut out = vec![0f32; n];
    const PAR: usize = 1 << 15;
    if n >= 2 * PAR {
        out.par_chunks_mut(PAR)
            .zip(src.par_chunks(PAR))
            .for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(o, &s)| *o = f(s)));
    } else {
        out.iter_mut().zip(src).for_each(|(o, &s)| *o = f(s));
    }
    drop(st);
    Ok(Some(Tensor::from_vec(out, x.shape(), x.device())?))
}

/// ELU (alpha 1), vectorised; candle's for tensors it does not handle.
pub fn elu(x: &Tensor) -> Result<Tensor> {
    match map(x, elu1)? {
        Some(y) => Ok(y),
        None => x.elu(1.0),
    }
}

/// GELU (tanh approximation), vectorised; candle's for tensors it does not handle.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    match map(x, gelu1)? {
        Some(y) => Ok(y),
        None => x.gelu(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moshi::candle::Device;

    #[test]
    fn linear_matches_candle() {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 64, 70),
            (1, 1027, 33),
            (3, 96, 130),
            (8, 512, 100),
            (5, 40, 9),
        ] {
            let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
            let x = Tensor::randn(0f32, 1., (1, m, k), &dev).unwrap();
            let ours = linear(&w, &x).unwrap().unwrap();
            let theirs = x.broadcast_matmul(&w.t().unwrap()).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-3);
        }
    }

    #[test]
    fn bf16_rounds_as_torch_does_and_widens_exactly() {
        // Round to nearest, ties to even; a bf16 value survives the round trip.
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        for h in [0x0000u16, 0x8000, 0x3F80, 0xC2F7, 0x7F7F, 0x0001] {
            assert_eq!(f32_to_bf16(bf16_to_f32(h)), h);
        }
    }

    #[test]
    fn bf16_linear_is_the_f32_linear_of_the_widened_weights() {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (1, 64, 70),
            (1, 1027, 33),
            (1, 7, 3),
            (3, 96, 130),
            (9, 40, 9),
        ] {
            let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
            let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = Bf16Rows::from_f32(&wv, n, k);
            assert_eq!(b.dims(), (n, k));
            let widened = Tensor::from_vec(b.to_f32(), (n, k), &dev).unwrap();
            // The widened weights are the bf16 roundings of the originals.
            let d = (&widened - &w).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 0.02);
            let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut ours = vec![0f32; m * n];
            linear_rows_bf16(&b, &xv, &mut ours);
            let theirs = x.matmul(&widened.t().unwrap()).unwrap();
            let theirs = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, t) in ours.iter().zip(&theirs) {
                assert!(
                    (a - t).abs() < 1e-3 * t.abs().max(1.0),
                    "{m}x{k}x{n}: {a} vs {t}"
                );
            }
        }
    }

    #[test]
    fn the_portable_bf16_dot_matches_the_vector_one() {
        for n in [0, 1, 7, 8, 31, 32, 33, 100, 1024] {
            let w: Vec<u16> = (0..n)
                .map(|i| f32_to_bf16((i as f32 * 0.37).sin()))
                .collect();
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let exact: f64 = w
                .iter()
                .zip(&x)
                .map(|(a, b)| bf16_to_f32(*a) as f64 * *b as f64)
                .sum();
            for got in [dot_bf16(&w, &x), dot_bf16_portable(&w, &x)] {
                assert!(
                    (got as f64 - exact).abs() < 1e-4 * exact.abs().max(1.0),
                    "{n}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn elu_and_gelu_match_candle() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.005).collect();
        let mut v2 = v.clone();
        v2.extend([-200.0, -90.0, -1e-7, 0.0, 1e-7, 90.0, 200.0]);
        let x = Tensor::from_vec(v2.clone(), v2.len(), &dev).unwrap();
        for (ours, theirs) in [
            (elu(&x).unwrap(), x.elu(1.0).unwrap()),
            (gelu_tanh(&x).unwrap(), x.gelu().unwrap()),
        ] {
            let a = ours.to_vec1::<f32>().unwrap();
            let b = theirs.to_vec1::<f32>().unwrap();
            for ((a, b), x) in a.iter().zip(&b).zip(&v2) {
                let tol = 4e-7 * b.abs().max(1.0);
                assert!((a - b).abs() <= tol, "x {x}: {a} against {b}");
            }
        }
    }
}
