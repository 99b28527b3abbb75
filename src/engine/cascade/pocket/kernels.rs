//! CPU kernels for the shapes Pocket TTS streams at, where candle's general matmul
//! (the `gemm` crate) is slow: a linear layer applied to a few rows (the flow LM and
//! its head step one frame at a time), as dot
//! products of each weight row with each input row, rows split across the current
//! rayon pool (the one `engine::cpu_share` sizes).

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
}
