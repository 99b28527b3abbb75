//! The codec decoder's streaming convolutions on plain buffers, through
//! `kernels::gemm_shifted`: a stride-1 (dilated) convolution reads its taps as shifted
//! windows of the input, with no im2col copy, and a transposed convolution is one
//! matrix product followed by an overlap-add. Both keep their state between frames as
//! `layers::StreamConv` and `StreamConvTr` do (the same arithmetic, in another order
//! of summation), and can apply the ELU that precedes them while copying their input.

use super::kernels::{elu_one, gemm_shifted, PackedRows, TB};
use moshi::candle::{Result, Tensor};
use moshi::candle_nn::VarBuilder;
use std::sync::Arc;

/// `StreamingConv1d` with stride 1: (channels, time) in, (out, time) out.
#[derive(Clone)]
pub struct DirectConv {
    w: Arc<PackedRows>,
    bias: Option<Arc<Vec<f32>>>,
    cin: usize,
    k: usize,
    dilation: usize,
    /// ELU of the input first.
    elu_in: bool,
    /// The last `(k - 1)·dilation` inputs of each channel (after the ELU).
    history: Vec<f32>,
    buf: Vec<f32>,
    offs: Vec<usize>,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl DirectConv {
    /// `vb` at the `StreamingConv1d` (its `conv.weight`, `conv.bias`).
    pub fn load(
        vb: &VarBuilder,
        (inp, out, k): (usize, usize, usize),
        dilation: usize,
        elu_in: bool,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let w = to_vec(&vb.get((out, inp, k), "weight")?)?;
        let bias = to_vec(&vb.get(out, "bias")?)?;
        Ok(Self {
            w: Arc::new(PackedRows::new(&w, out, inp * k)),
            bias: Some(Arc::new(bias)),
            cin: inp,
            k,
            dilation,
            elu_in,
            history: vec![0f32; inp * (k - 1) * dilation],
            buf: Vec::new(),
            offs: Vec::new(),
        })
    }

    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }

    pub fn out_channels(&self) -> usize {
        self.w.rows()
    }

    /// `x` (cin, t) into `out` (out channels, t); with `accumulate`, added to `out`.
    pub fn forward(&mut self, x: &[f32], t: usize, out: &mut Vec<f32>, accumulate: bool) {
        let keep = (self.k - 1) * self.dilation;
        // Each channel's row: its history, the new input, room for the last block.
        let stride = keep + t.next_multiple_of(TB);
        self.buf.clear();
        self.buf.resize(self.cin * stride, 0.0);
        for c in 0..self.cin {
            let row = &mut self.buf[c * stride..(c + 1) * stride];
            row[..keep].copy_from_slice(&self.history[c * keep..(c + 1) * keep]);
            let src = &x[c * t..(c + 1) * t];
            if self.elu_in {
                row[keep..keep + t]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = elu_one(v));
            } else {
                row[keep..keep + t].copy_from_slice(src);
            }
            self.history[c * keep..(c + 1) * keep].copy_from_slice(&row[t..t + keep]);
        }
        self.offs.clear();
        for c in 0..self.cin {
            for j in 0..self.k {
                self.offs.push(c * stride + j * self.dilation);
            }
        }
        if !accumulate {
            out.clear();
            out.resize(self.w.rows() * t, 0.0);
        }
        gemm_shifted(
            &self.w,
            &self.buf,
            &self.offs,
            t,
            self.bias.as_deref().map(|b| b.as_slice()),
            accumulate,
            out,
        );
    }
}

/// `StreamingConvTranspose1d` (groups 1, kernel ≤ 2·stride): (cin, t) in, (out, t·stride)
/// out; the overlapping tail is kept, without its bias, for the next call.
#[derive(Clone)]
pub struct DirectConvTr {
    /// Rows (out channel, tap), columns the input channels.
    w: Arc<PackedRows>,
    bias: Arc<Vec<f32>>,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    elu_in: bool,
    /// (cout, k - stride)
    partial: Vec<f32>,
    buf: Vec<f32>,
    blocks: Vec<f32>,
    offs: Vec<usize>,
}

impl DirectConvTr {
    /// `vb` at the `StreamingConvTranspose1d` (its `convtr.weight`, `convtr.bias`).
    pub fn load(
        vb: &VarBuilder,
        (inp, out, k): (usize, usize, usize),
        stride: usize,
        elu_in: bool,
    ) -> Result<Self> {
        if k < stride || k > 2 * stride {
            moshi::candle::bail!("transposed conv: kernel {k} with stride {stride} not supported");
        }
        let vb = vb.pp("convtr");
        // PyTorch's (in, out, k) as rows (out, tap) over columns in.
        let w = to_vec(&vb.get((inp, out, k), "weight")?)?;
        let mut rows = vec![0f32; out * k * inp];
        for c in 0..inp {
            for o in 0..out {
                for m in 0..k {
                    rows[(o * k + m) * inp + c] = w[(c * out + o) * k + m];
                }
            }
        }
        Ok(Self {
            w: Arc::new(PackedRows::new(&rows, out * k, inp)),
            bias: Arc::new(to_vec(&vb.get(out, "bias")?)?),
            cin: inp,
            cout: out,
            k,
            stride,
            elu_in,
            partial: vec![0f32; out * (k - stride)],
            buf: Vec::new(),
            blocks: Vec::new(),
            offs: Vec::new(),
        })
    }

    pub fn reset(&mut self) {
        self.partial.fill(0.0);
    }

    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// `x` (cin, t) into `out` (cout, t·stride).
    pub fn forward(&mut self, x: &[f32], t: usize, out: &mut Vec<f32>) {
        let (s, k) = (self.stride, self.k);
        let stride = t.next_multiple_of(TB);
        self.buf.clear();
        self.buf.resize(self.cin * stride, 0.0);
        for c in 0..self.cin {
            let (row, src) = (
                &mut self.buf[c * stride..c * stride + t],
                &x[c * t..(c + 1) * t],
            );
            if self.elu_in {
                row.iter_mut().zip(src).for_each(|(d, &v)| *d = elu_one(v));
            } else {
                row.copy_from_slice(src);
            }
        }
        self.offs.clear();
        self.offs.extend((0..self.cin).map(|c| c * stride));
        self.blocks.clear();
        self.blocks.resize(self.cout * k * t, 0.0);
        gemm_shifted(
            &self.w,
            &self.buf,
            &self.offs,
            t,
            None,
            false,
            &mut self.blocks,
        );
        // Overlap-add: input step i writes taps m at i·s + m.
        let pt = k - s;
        let n = t * s;
        out.clear();
        out.resize(self.cout * n, 0.0);
        let mut tail = vec![0f32; pt];
        for o in 0..self.cout {
            let y = &mut out[o * n..(o + 1) * n];
            tail.copy_from_slice(&self.partial[o * pt..(o + 1) * pt]);
            y[..pt].copy_from_slice(&tail);
            tail.fill(0.0);
            for m in 0..k {
                let b = &self.blocks[(o * k + m) * t..(o * k + m + 1) * t];
                for (i, &v) in b.iter().enumerate() {
                    let p = i * s + m;
                    if p < n {
                        y[p] += v;
                    } else {
                        tail[p - n] += v;
                    }
                }
            }
            let bo = self.bias[o];
            y.iter_mut().for_each(|v| *v += bo);
            self.partial[o * pt..(o + 1) * pt].copy_from_slice(&tail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layers::{StreamConv, StreamConvTr};
    use super::*;
    use moshi::candle::{DType, Device};

    /// Random `{kind}.weight` and `{kind}.bias` under `c`.
    fn random_vb(
        dev: &Device,
        kind: &str,
        w: (usize, usize, usize),
        out: usize,
    ) -> VarBuilder<'static> {
        let mut m = std::collections::HashMap::new();
        m.insert(
            format!("c.{kind}.weight"),
            Tensor::randn(0f32, 0.3, w, dev).unwrap(),
        );
        m.insert(
            format!("c.{kind}.bias"),
            Tensor::randn(0f32, 0.3, out, dev).unwrap(),
        );
        VarBuilder::from_tensors(m, DType::F32, dev).pp("c")
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Three frames through the direct conv and through `StreamConv` (candle's conv1d),
    /// the ELU applied before the latter.
    #[test]
    fn direct_conv_streams_like_candle() {
        let dev = Device::Cpu;
        for (cin, cout, k, dil, t, elu) in [
            (5, 11, 3, 1, 7, true),
            (16, 9, 3, 2, 33, false),
            (8, 17, 1, 1, 20, true),
            (4, 3, 7, 1, 16, false),
        ] {
            let vb = random_vb(&dev, "conv", (cout, cin, k), cout);
            let mut theirs = StreamConv::load(&vb, cin, cout, k, 1, dil, true).unwrap();
            let mut ours = DirectConv::load(&vb, (cin, cout, k), dil, elu).unwrap();
            for frame in 0..3 {
                let x = Tensor::randn(0f32, 1., (1, cin, t), &dev).unwrap();
                let xin = if elu { x.elu(1.0).unwrap() } else { x.clone() };
                let want = to_vec(&theirs.forward(&xin).unwrap()).unwrap();
                let mut got = Vec::new();
                ours.forward(&to_vec(&x).unwrap(), t, &mut got, false);
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-4,
                    "conv {cin}->{cout} k{k} d{dil} frame {frame}: {d}"
                );
            }
        }
    }

    #[test]
    fn direct_transposed_conv_streams_like_candle() {
        let dev = Device::Cpu;
        for (cin, cout, s, k, t, elu) in [
            (6, 5, 3, 6, 4, true),
            (16, 9, 4, 8, 17, false),
            (3, 12, 2, 3, 5, true),
        ] {
            let vb = random_vb(&dev, "convtr", (cin, cout, k), cout);
            let mut theirs = StreamConvTr::load(&vb, cin, cout, k, s, false, true).unwrap();
            let mut ours = DirectConvTr::load(&vb, (cin, cout, k), s, elu).unwrap();
            for frame in 0..3 {
                let x = Tensor::randn(0f32, 1., (1, cin, t), &dev).unwrap();
                let xin = if elu { x.elu(1.0).unwrap() } else { x.clone() };
                let want = to_vec(&theirs.forward(&xin).unwrap()).unwrap();
                let mut got = Vec::new();
                ours.forward(&to_vec(&x).unwrap(), t, &mut got);
                let d = max_diff(&got, &want);
                assert!(
                    d < 1e-4,
                    "convtr {cin}->{cout} k{k} s{s} frame {frame}: {d}"
                );
            }
        }
    }
}
