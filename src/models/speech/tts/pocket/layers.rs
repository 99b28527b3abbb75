//! The small layers Pocket TTS is built from, with the exact arithmetic of Kyutai's
//! PyTorch modules (`pocket_tts/modules`): linear layers (f32, or q8 through candle's
//! quantized matmul), layer norms, the flow head's variance norm, RoPE, and the
//! streaming convolutions of the codec decoder.

use super::kernels::{gemm_shifted, linear_rows_bf16, Bf16Rows, PackedRows, TB};
use moshi::candle::quantized::{GgmlDType, QMatMul, QTensor};
use moshi::candle::{DType, Module, Result, Tensor, D};
use moshi::candle_nn::VarBuilder;
use std::sync::Arc;

/// `nn.Linear`: f32 weights, or q8_0 ones (the transformer's layers with `--tts-q8`),
/// or f32 ones packed for `kernels::gemm_shifted` (the codec's transformer, 16 rows a
/// frame, where candle's matmul would repack the whole weight on every call), or
/// bf16 ones computed in f32 (the flow LM of a checkpoint stored in bf16, as Kyutai
/// publishes it).
#[derive(Clone)]
pub enum Linear {
    F32 {
        w: Tensor,
        b: Option<Tensor>,
    },
    Q8 {
        w: QMatMul,
        b: Option<Tensor>,
    },
    Packed {
        w: Arc<PackedRows>,
        b: Option<Vec<f32>>,
    },
    Bf16 {
        w: Arc<Bf16Rows>,
        b: Option<Tensor>,
    },
}

impl Linear {
    pub fn load(vb: &VarBuilder, inp: usize, out: usize, bias: bool) -> Result<Self> {
        let w = vb.get((out, inp), "weight")?;
        let b = if bias {
            Some(vb.get(out, "bias")?)
        } else {
            None
        };
        Ok(Linear::F32 { w, b })
    }

    /// The same layer with its weight in bf16 (f32 layers only): exact when the
    /// weight was read from bf16.
    pub fn bf16(&self) -> Result<Self> {
        match self {
            Linear::F32 { w, b } => {
                let (n, k) = w.dims2()?;
                let wv = w.flatten_all()?.to_vec1::<f32>()?;
                Ok(Linear::Bf16 {
                    w: Arc::new(Bf16Rows::from_f32(&wv, n, k)),
                    b: b.clone(),
                })
            }
            other => Ok(other.clone()),
        }
    }

    /// Bytes of weight one pass reads (q8_0: 34 bytes per 32 weights).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::F32 { w, .. } => w.elem_count() * 4,
            Linear::Q8 { w, .. } => match w {
                QMatMul::QTensor(q) => q.storage_size_in_bytes(),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                    t.elem_count() * t.dtype().size_in_bytes()
                }
            },
            Linear::Packed { w, .. } => w.rows() * w.cols() * 4,
            Linear::Bf16 { w, .. } => w.dims().0 * w.dims().1 * 2,
        }
    }

    /// The weight in f32 (a bf16 one widened), for the layers that are not packed.
    fn f32_weight(&self) -> Result<Option<(Tensor, Option<Tensor>)>> {
        Ok(match self {
            Linear::F32 { w, b } => Some((w.clone(), b.clone())),
            Linear::Bf16 { w, b } => {
                let dev = b
                    .as_ref()
                    .map_or(moshi::candle::Device::Cpu, |b| b.device().clone());
                Some((Tensor::from_vec(w.to_f32(), w.dims(), &dev)?, b.clone()))
            }
            _ => None,
        })
    }

    /// The same layer with its weight in q8_0 (rows must be a multiple of 32 wide).
    pub fn quantized(&self) -> Result<Self> {
        if let Linear::Bf16 { .. } = self {
            let (w, b) = self.f32_weight()?.expect("a bf16 layer has a weight");
            return Linear::F32 { w, b }.quantized();
        }
        match self {
            Linear::F32 { w, b } if w.dim(1)? % 32 == 0 => {
                let q = QTensor::quantize(w, GgmlDType::Q8_0)?;
                Ok(Linear::Q8 {
                    w: QMatMul::from_qtensor(q)?,
                    b: b.clone(),
                })
            }
            other => Ok(other.clone()),
        }
    }

    /// The same layer with its weight packed for `gemm_shifted` (f32 layers only).
    pub fn packed(&self) -> Result<Self> {
        match self {
            Linear::F32 { w, b } => {
                let (n, k) = w.dims2()?;
                let wv = w.flatten_all()?.to_vec1::<f32>()?;
                Ok(Linear::Packed {
                    w: Arc::new(PackedRows::new(&wv, n, k)),
                    b: b.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?,
                })
            }
            other => Ok(other.clone()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, b) = match self {
            Linear::Packed { w, b } => return packed_forward(w, b.as_deref(), x),
            Linear::Bf16 { w, b } => (bf16_forward(w, x)?, b),
            Linear::F32 { w, b } => {
                if let Some(y) = super::kernels::linear(w, x)? {
                    return match b {
                        Some(b) => y.broadcast_add(b),
                        None => Ok(y),
                    };
                }
                let y = match x.dims() {
                    [b0, t, k] => {
                        x.reshape((b0 * t, *k))?
                            .matmul(&w.t()?)?
                            .reshape((*b0, *t, ()))?
                    }
                    _ => x.matmul(&w.t()?)?,
                };
                (y, b)
            }
            Linear::Q8 { w, b } => (w.forward(x)?, b),
        };
        match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x` (…, k) times the transpose of the bf16 (n, k) weight. A few rows (a step) read
/// the weight as bf16; many (a prompt) widen it a block of rows at a time for candle's
/// matmul, which reuses each block across the rows far better than dot products do.
fn bf16_forward(w: &Bf16Rows, x: &Tensor) -> Result<Tensor> {
    /// Weight rows widened at a time (1 MB of f32 at k = 1024).
    const BLOCK: usize = 256;
    let dims = x.dims();
    let (n, k) = w.dims();
    if dims.last() != Some(&k) {
        moshi::candle::bail!("bf16 linear: input {dims:?} for a weight of {k} columns");
    }
    let x = x.to_dtype(DType::F32)?;
    let m = x.elem_count() / k.max(1);
    let mut y = vec![0f32; m * n];
    if m <= super::kernels::MAX_ROWS {
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        linear_rows_bf16(w, &xs, &mut y);
    } else {
        let xm = x.reshape((m, k))?.contiguous()?;
        for r0 in (0..n).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(n);
            let wb = Tensor::from_vec(w.rows_f32(r0..r1), (r1 - r0, k), x.device())?;
            let yb = xm.matmul(&wb.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            for (dst, src) in y.chunks_exact_mut(n).zip(yb.chunks_exact(r1 - r0)) {
                dst[r0..r1].copy_from_slice(src);
            }
        }
    }
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(y, shape, x.device())
}

/// `x` (…, k) times the transpose of the packed (n, k) weight, plus the bias: computed
/// as W · xᵀ over the rows of x as columns.
fn packed_forward(w: &PackedRows, b: Option<&[f32]>, x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let k = *dims.last().unwrap_or(&0);
    let n = w.rows();
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let m = xs.len() / k.max(1);
    let mp = m.next_multiple_of(TB);
    let mut xt = vec![0f32; k * mp];
    for (r, row) in xs.chunks_exact(k).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            xt[j * mp + r] = v;
        }
    }
    let offs: Vec<usize> = (0..k).map(|j| j * mp).collect();
    let mut yt = vec![0f32; n * m];
    gemm_shifted(w, &xt, &offs, m, b, false, &mut yt);
    let mut y = vec![0f32; m * n];
    for (j, col) in yt.chunks_exact(m).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            y[r * n + j] = v;
        }
    }
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(y, shape, x.device())
}

/// `nn.LayerNorm` (or the flow head's re-implementation): over the last dimension,
/// biased variance; `affine: None` for `elementwise_affine=False`.
#[derive(Clone)]
pub struct LayerNorm {
    affine: Option<(Tensor, Tensor)>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            affine: Some((vb.get(dim, "weight")?, vb.get(dim, "bias")?)),
            eps,
        })
    }

    pub fn plain(eps: f64) -> Self {
        Self { affine: None, eps }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some((w, b)), true) = (&self.affine, x.is_contiguous()) {
            // candle's fused kernel: one pass over each row.
            return moshi::candle_nn::ops::layer_norm(x, w, b, self.eps as f32);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        match &self.affine {
            Some((w, b)) => y.broadcast_mul(w)?.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// The flow head's `RMSNorm`: x · alpha / sqrt(eps + var(x)), with torch's unbiased
/// variance (the mean is subtracted for the variance only).
#[derive(Clone)]
pub struct VarNorm {
    alpha: Tensor,
    eps: f64,
}

impl VarNorm {
    pub fn load(vb: &VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            alpha: vb.get(dim, "alpha")?,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(D::Minus1)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let var = (x.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n.max(2) - 1) as f64)?;
        let scale = (var + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&scale)?.broadcast_mul(&self.alpha)
    }
}

/// The cos and sin tables of interleaved RoPE (pairs (2i, 2i+1)) for positions
/// `offset..offset+t`, as `pocket_tts/modules/rope.py` computes them in f32: (t, d/2) each.
pub fn rope_tables(
    t: usize,
    d: usize,
    offset: usize,
    max_period: f64,
    device: &moshi::candle::Device,
) -> Result<(Tensor, Tensor)> {
    let half = d / 2;
    let step = (-(max_period.ln()) * 2.0 / d as f64) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * step).exp()).collect();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in 0..t {
        let ts = (p + offset) as f32;
        for f in &freqs {
            let a = f * ts;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (t, half), device)?,
        Tensor::from_vec(sin, (t, half), device)?,
    ))
}

/// RoPE on `x` (batch, heads, time, head width) with tables from `rope_tables`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    moshi::candle_nn::rotary_emb::rope_i(&x.contiguous()?, cos, sin)
}

pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    super::kernels::gelu_tanh(x)
}

/// `StreamingConv1d`: a causal conv that keeps its last `kernel - stride` input samples.
#[derive(Clone)]
pub struct StreamConv {
    w: Tensor,
    b: Option<Tensor>,
    stride: usize,
    dilation: usize,
    previous: Option<Tensor>,
    keep: usize,
}

impl StreamConv {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        inp: usize,
        out: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        bias: bool,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let w = vb.get((out, inp, k), "weight")?;
        let b = if bias {
            Some(vb.get(out, "bias")?)
        } else {
            None
        };
        let keep = (k - 1) * dilation + 1 - stride;
        Ok(Self {
            w,
            b,
            stride,
            dilation,
            previous: None,
            keep,
        })
    }

    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// `x`: (1, channels, time), time a multiple of the stride.
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let x = if self.keep > 0 {
            let prev = match &self.previous {
                Some(p) => p.clone(),
                None => Tensor::zeros((x.dim(0)?, x.dim(1)?, self.keep), DType::F32, x.device())?,
            };
            let full = Tensor::cat(&[&prev, x], 2)?;
            let n = full.dim(2)?;
            self.previous = Some(full.narrow(2, n - self.keep, self.keep)?.contiguous()?);
            full
        } else {
            x.clone()
        };
        let k = self.w.dim(2)?;
        let y = if k == 1 && self.stride == 1 {
            // A 1x1 conv is a matmul over channels.
            let (b, c, t) = x.dims3()?;
            let w = self.w.squeeze(2)?;
            w.broadcast_matmul(&x.reshape((b, c, t))?)?
        } else {
            x.conv1d(&self.w, 0, self.stride, self.dilation, 1)?
        };
        match &self.b {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

/// `StreamingConvTranspose1d`: the overlapping tail of each call is kept (without its
/// bias) and added to the start of the next. `groups` is 1 or the channel count.
#[derive(Clone)]
pub struct StreamConvTr {
    /// (in, out / groups, kernel)
    w: Tensor,
    b: Option<Tensor>,
    stride: usize,
    depthwise: bool,
    partial: Option<Tensor>,
}

impl StreamConvTr {
    pub fn load(
        vb: &VarBuilder,
        inp: usize,
        out: usize,
        k: usize,
        stride: usize,
        depthwise: bool,
        bias: bool,
    ) -> Result<Self> {
        let vb = vb.pp("convtr");
        let w = vb.get((inp, if depthwise { 1 } else { out }, k), "weight")?;
        let b = if bias {
            Some(vb.get(out, "bias")?)
        } else {
            None
        };
        Ok(Self {
            w,
            b,
            stride,
            depthwise,
            partial: None,
        })
    }

    pub fn reset(&mut self) {
        self.partial = None;
    }

    /// The full transposed convolution of `x` (1, in, time): (1, out, (time-1)·stride + k),
    /// without bias.
    fn full(&self, x: &Tensor) -> Result<Tensor> {
        let (_, cin, t) = x.dims3()?;
        let (_, cout, k) = self.w.dims3()?;
        let s = self.stride;
        // Each input step writes a block of k outputs: (out, time, k).
        let blocks = if self.depthwise {
            x.squeeze(0)?
                .unsqueeze(2)?
                .broadcast_mul(&self.w.reshape((cin, 1, k))?)?
        } else {
            let w = self.w.reshape((cin, cout * k))?;
            x.squeeze(0)?
                .t()?
                .matmul(&w)?
                .reshape((t, cout, k))?
                .transpose(0, 1)?
        };
        let cout = blocks.dim(0)?;
        if k == 2 * s {
            // Overlap-add of two halves: block i covers [i·s, i·s + 2s).
            let a = blocks
                .narrow(2, 0, s)?
                .contiguous()?
                .reshape((cout, t * s))?;
            let b = blocks
                .narrow(2, s, s)?
                .contiguous()?
                .reshape((cout, t * s))?;
            let y = (a.pad_with_zeros(1, 0, s)? + b.pad_with_zeros(1, s, 0)?)?;
            return y.unsqueeze(0);
        }
        if k == s {
            return blocks.contiguous()?.reshape((cout, t * s))?.unsqueeze(0);
        }
        let groups = if self.depthwise { cin } else { 1 };
        x.conv_transpose1d(&self.w, 0, 0, s, 1, groups)
    }

    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let mut y = self.full(x)?;
        if let Some(b) = &self.b {
            y = y.broadcast_add(&b.reshape((1, (), 1))?)?;
        }
        let k = self.w.dim(2)?;
        let pt = k - self.stride;
        if pt == 0 {
            return Ok(y);
        }
        let n = y.dim(2)?;
        if let Some(p) = &self.partial {
            let head = (y.narrow(2, 0, pt)? + p)?;
            y = Tensor::cat(&[&head, &y.narrow(2, pt, n - pt)?], 2)?;
        }
        let mut tail = y.narrow(2, n - pt, pt)?;
        if let Some(b) = &self.b {
            tail = tail.broadcast_sub(&b.reshape((1, (), 1))?)?;
        }
        self.partial = Some(tail.contiguous()?);
        y.narrow(2, 0, n - pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moshi::candle::Device;

    #[test]
    fn a_bf16_layer_computes_as_f32_with_its_weights_rounded_and_quantizes_to_q8() {
        let dev = Device::Cpu;
        // 300 rows of 64 outputs: the prompt path widens it in two blocks.
        let w = Tensor::randn(0f32, 1., (300, 64), &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 300, &dev).unwrap();
        let f32_layer = Linear::F32 {
            w: w.clone(),
            b: Some(b.clone()),
        };
        let bf16 = f32_layer.bf16().unwrap();
        assert!(matches!(bf16, Linear::Bf16 { .. }));
        // Rounding a second time changes nothing: a bf16 checkpoint loads exactly.
        let rounded = w
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let exact = Linear::F32 {
            w: rounded,
            b: Some(b),
        };
        for rows in [1, 3, 20, 300] {
            let x = Tensor::randn(0f32, 1., (1, rows, 64), &dev).unwrap();
            let want = exact.forward(&x).unwrap();
            let got = bf16.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, rows, 300]);
            let d = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4, "{rows} rows");
            // --tts-q8 on a bf16 checkpoint quantizes the widened weights.
            let q = bf16.quantized().unwrap();
            assert!(matches!(q, Linear::Q8 { .. }));
            let d = (q.forward(&x).unwrap() - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 0.5, "{rows} rows, q8");
        }
    }

    #[test]
    fn packed_linear_matches_candle() {
        let dev = Device::Cpu;
        for (m, k, n, bias) in [(16, 64, 40, true), (5, 96, 130, false), (33, 32, 8, true)] {
            let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1., n, &dev).unwrap());
            let x = Tensor::randn(0f32, 1., (1, m, k), &dev).unwrap();
            let plain = Linear::F32 {
                w: w.clone(),
                b: b.clone(),
            };
            let packed = plain.packed().unwrap();
            let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
            let want = match &b {
                Some(b) => want.broadcast_add(b).unwrap(),
                None => want,
            };
            let got = packed.forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-3, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn transposed_conv_by_blocks_matches_candle() {
        let dev = Device::Cpu;
        for (cin, cout, k, s, dw) in [
            (3, 2, 4, 2, false),
            (3, 2, 6, 3, false),
            (4, 4, 8, 4, true),
            (2, 3, 5, 2, false),
        ] {
            let x = Tensor::randn(0f32, 1., (1, cin, 5), &dev).unwrap();
            let w = Tensor::randn(0f32, 1., (cin, if dw { 1 } else { cout }, k), &dev).unwrap();
            let c = StreamConvTr {
                w: w.clone(),
                b: None,
                stride: s,
                depthwise: dw,
                partial: None,
            };
            let ours = c.full(&x).unwrap();
            let groups = if dw { cin } else { 1 };
            let theirs = x.conv_transpose1d(&w, 0, 0, s, 1, groups).unwrap();
            let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
        }
    }

    #[test]
    fn streaming_conv_equals_one_shot() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (2, 3, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 2, &dev).unwrap();
        let mut c = StreamConv {
            w,
            b: Some(b),
            stride: 2,
            dilation: 1,
            previous: None,
            keep: 2,
        };
        let x = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap();
        let whole = c.clone().forward(&x).unwrap();
        let a = c.forward(&x.narrow(2, 0, 4).unwrap()).unwrap();
        let bb = c.forward(&x.narrow(2, 4, 4).unwrap()).unwrap();
        let parts = Tensor::cat(&[a, bb], 2).unwrap();
        let d = (whole - parts).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
