//! The loopback model: output = input delayed by exactly one frame. It makes the
//! audio path measurable sample for sample.

use crate::models::duplex::{DuplexModel, ModelInfo, StepOutput};
use anyhow::{ensure, Result};

pub struct Loopback {
    sample_rate: u32,
    previous: Vec<f32>,
}

impl Loopback {
    pub fn new(sample_rate: u32, frame_len: usize) -> Self {
        Self {
            sample_rate,
            previous: vec![0.0; frame_len],
        }
    }
}

impl DuplexModel for Loopback {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "loopback".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    fn frame_len(&self) -> usize {
        self.previous.len()
    }
    fn delay_frames(&self) -> usize {
        1
    }
    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> Result<()> {
        ensure!(
            pcm_in.len() == self.previous.len(),
            "loopback: frame of {} samples, expected {}",
            pcm_in.len(),
            self.previous.len()
        );
        out.pcm.copy_from_slice(&self.previous);
        self.previous.copy_from_slice(pcm_in);
        Ok(())
    }
    fn reset(&mut self) {
        self.previous.fill(0.0);
    }
    fn fork(&self) -> Option<Box<dyn DuplexModel>> {
        Some(Box::new(Self::new(self.sample_rate, self.previous.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_input_delayed_by_one_frame() {
        let mut m = Loopback::new(24_000, 4);
        let mut out = StepOutput::default();
        out.clear(4);
        m.step(&[1.0, 2.0, 3.0, 4.0], &mut out).unwrap();
        assert_eq!(out.pcm, vec![0.0; 4]);
        m.step(&[5.0, 6.0, 7.0, 8.0], &mut out).unwrap();
        assert_eq!(out.pcm, vec![1.0, 2.0, 3.0, 4.0]);
        m.reset();
        m.step(&[0.5; 4], &mut out).unwrap();
        assert_eq!(out.pcm, vec![0.0; 4]);
    }
}
