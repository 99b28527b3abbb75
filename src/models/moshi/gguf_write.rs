//! Writing GGUF (version 2, as candle writes it): the header, then each tensor's data
//! padded to 32 bytes. candle's own writer needs every tensor in memory at once; this
//! one lets the data follow a tensor at a time, from a file or from a generator.

use moshi::candle::quantized::GgmlDType;

pub const ALIGN: u64 = 32;

/// One tensor as the header describes it.
pub struct GgufEntry<'a> {
    pub name: &'a str,
    pub dims: &'a [usize],
    pub dtype: GgmlDType,
}

impl GgufEntry<'_> {
    /// Bytes of its data.
    pub fn bytes(&self) -> u64 {
        let elems: usize = self.dims.iter().product();
        (elems / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
    pub fn padded_bytes(&self) -> u64 {
        self.bytes().div_ceil(ALIGN) * ALIGN
    }
}

/// ggml's `ggml_type` ids, as GGUF stores them.
fn type_id(dt: GgmlDType) -> u32 {
    match dt {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// Zeros up to the next multiple of `ALIGN`.
pub fn pad(buf: &mut Vec<u8>) {
    buf.resize(
        (buf.len() as u64).div_ceil(ALIGN) as usize * ALIGN as usize,
        0,
    );
}

/// The header and tensor table, padded so the data of `entries` follows in order, each
/// padded with `pad`.
pub fn header(entries: &[GgufEntry]) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&0x4655_4747u32.to_le_bytes());
    buf.extend_from_slice(&2u32.to_le_bytes());
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    buf.extend_from_slice(&0u64.to_le_bytes());
    let mut offset = 0u64;
    for e in entries {
        buf.extend_from_slice(&(e.name.len() as u64).to_le_bytes());
        buf.extend_from_slice(e.name.as_bytes());
        buf.extend_from_slice(&(e.dims.len() as u32).to_le_bytes());
        // GGUF lists dimensions innermost first.
        for &d in e.dims.iter().rev() {
            buf.extend_from_slice(&(d as u64).to_le_bytes());
        }
        buf.extend_from_slice(&type_id(e.dtype).to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        offset += e.padded_bytes();
    }
    pad(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use moshi::candle::quantized::{gguf_file, QTensor};
    use moshi::candle::{Device, Tensor};

    /// What we write, candle reads back: names, shapes, types and values.
    #[test]
    fn candle_reads_what_we_write() {
        let a = Tensor::arange(0f32, 64., &Device::Cpu)
            .unwrap()
            .reshape((2, 32))
            .unwrap();
        let b = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let qa = QTensor::quantize(&a, GgmlDType::Q8_0).unwrap();
        let qb = QTensor::quantize(&b, GgmlDType::F32).unwrap();
        let entries = [
            GgufEntry {
                name: "a.weight",
                dims: &[2, 32],
                dtype: GgmlDType::Q8_0,
            },
            GgufEntry {
                name: "b",
                dims: &[3],
                dtype: GgmlDType::F32,
            },
        ];
        let mut buf = header(&entries);
        for (q, e) in [(&qa, &entries[0]), (&qb, &entries[1])] {
            let data = q.data().unwrap();
            assert_eq!(data.len() as u64, e.bytes());
            buf.extend_from_slice(&data);
            pad(&mut buf);
        }
        let mut cursor = std::io::Cursor::new(&buf);
        let content = gguf_file::Content::read(&mut cursor).unwrap();
        let ra = content
            .tensor(&mut cursor, "a.weight", &Device::Cpu)
            .unwrap();
        let rb = content.tensor(&mut cursor, "b", &Device::Cpu).unwrap();
        assert_eq!(
            (ra.dtype(), ra.shape().dims()),
            (GgmlDType::Q8_0, &[2usize, 32][..])
        );
        let same = |x: &QTensor, y: &QTensor| {
            x.dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                == y.dequantize(&Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
        };
        assert!(same(&ra, &qa) && same(&rb, &qb));
    }
}
