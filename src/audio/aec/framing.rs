//! Block-size adapters: the canceller works on fixed 10 ms frames, the engine hands it
//! blocks of any size. Buffers are plain `Vec`s moved with slice copies and front
//! drains (a memmove), which stay cheap even in unoptimised builds.

/// Moves the first `out.len()` samples of `buf` into `out`.
fn pop_front(buf: &mut Vec<f32>, out: &mut [f32]) {
    out.copy_from_slice(&buf[..out.len()]);
    buf.drain(..out.len());
}

/// Runs fixed-size frames through a processor while accepting blocks of any size, in place.
///
/// Blocks that are whole multiples of the frame (the engine's 1920 samples) pass with no
/// delay. The first block that is not switches the adapter, once, to a constant delay of
/// one frame less a sample, which is enough for any block size from then on: the delay
/// never changes again, so no gap is ever inserted mid-stream.
#[derive(Debug)]
pub struct FrameAdapter {
    frame: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    frame_in: Vec<f32>,
    frame_out: Vec<f32>,
    latency: usize,
}

impl FrameAdapter {
    pub fn new(frame: usize) -> Self {
        assert!(frame > 0, "frame length must be positive");
        Self {
            frame,
            input: Vec::with_capacity(4 * frame),
            output: Vec::with_capacity(4 * frame),
            frame_in: vec![0.0; frame],
            frame_out: vec![0.0; frame],
            latency: 0,
        }
    }

    /// Samples of delay this adapter has added so far.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Replaces `block` with processed samples; `process` is called once per whole frame.
    pub fn process(&mut self, block: &mut [f32], mut process: impl FnMut(&[f32], &mut [f32])) {
        self.input.extend_from_slice(block);
        while self.input.len() >= self.frame {
            pop_front(&mut self.input, &mut self.frame_in);
            process(&self.frame_in, &mut self.frame_out);
            self.output.extend_from_slice(&self.frame_out);
        }
        if self.output.len() < block.len() {
            // Invariant: output + input = latency + samples not yet returned; input never
            // holds a whole frame, so a latency of frame - 1 always answers in full.
            let pad = self.frame - 1 - self.latency;
            self.output.splice(0..0, std::iter::repeat_n(0.0, pad));
            self.latency = self.frame - 1;
        }
        pop_front(&mut self.output, block);
    }
}

/// The far-end reference waiting to be paired with capture frames, one frame per frame.
///
/// Pairing render and capture 1:1 is what AEC3 expects (it treats bursts of render as
/// jitter to correct); a capture frame with no reference waiting gets silence, which is
/// what the speaker plays on an underrun.
#[derive(Debug)]
pub struct FarQueue {
    frame: usize,
    max_len: usize,
    samples: Vec<f32>,
}

impl FarQueue {
    /// `max_len`: samples kept before the oldest whole frames are handed out early.
    pub fn new(frame: usize, max_len: usize) -> Self {
        Self {
            frame,
            max_len: max_len.max(frame),
            samples: Vec::with_capacity(max_len + frame),
        }
    }

    pub fn push(&mut self, far: &[f32]) {
        self.samples.extend_from_slice(far);
    }

    /// Whole frames beyond the bound, to feed at once so the queue cannot grow without limit.
    pub fn take_excess(&mut self, out: &mut [f32]) -> bool {
        if self.samples.len() <= self.max_len {
            return false;
        }
        self.take(out);
        true
    }

    /// The next reference frame, padded with silence when too little is waiting.
    pub fn take(&mut self, out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.frame);
        let n = self.samples.len().min(out.len());
        pop_front(&mut self.samples, &mut out[..n]);
        out[n..].fill(0.0);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// A fixed delay, so the bypassed microphone keeps the canceller's timing and toggling
/// cancellation on and off never skips or repeats audio.
#[derive(Debug)]
pub struct DelayLine {
    buf: Vec<f32>,
}

impl DelayLine {
    pub fn new(delay: usize) -> Self {
        let mut buf = Vec::with_capacity(delay + 4096);
        buf.resize(delay, 0.0);
        Self { buf }
    }

    /// Pushes `input` in and writes the samples `delay` behind it to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut [f32]) {
        self.buf.extend_from_slice(input);
        pop_front(&mut self.buf, &mut out[..input.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(i: &[f32], o: &mut [f32]) {
        o.copy_from_slice(i);
    }

    fn run(block_sizes: &[usize], frame: usize) -> (Vec<f32>, usize) {
        let total: usize = block_sizes.iter().sum();
        let input: Vec<f32> = (1..=total).map(|i| i as f32).collect();
        let mut a = FrameAdapter::new(frame);
        let mut out = Vec::new();
        let mut pos = 0;
        for &n in block_sizes {
            let mut block = input[pos..pos + n].to_vec();
            a.process(&mut block, identity);
            out.extend(block);
            pos += n;
        }
        (out, a.latency())
    }

    #[test]
    fn whole_frames_add_no_latency() {
        let (out, latency) = run(&[1920, 1920, 480], 240);
        assert_eq!(latency, 0);
        assert_eq!(out, (1..=4320).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn odd_blocks_are_delayed_by_a_constant_below_one_frame() {
        let sizes: Vec<usize> = [100, 37, 512, 1, 240, 999, 64].repeat(5);
        let (out, latency) = run(&sizes, 240);
        assert_eq!(latency, 239);
        // Output is the input shifted by exactly `latency` samples.
        for (i, &v) in out.iter().enumerate() {
            let expected = if i < latency {
                0.0
            } else {
                (i - latency + 1) as f32
            };
            assert_eq!(v, expected, "sample {i}");
        }
    }

    #[test]
    fn delay_is_fixed_at_the_first_odd_block_even_after_aligned_ones() {
        let (out, latency) = run(&[480, 240, 7, 1000, 233, 240], 240);
        assert_eq!(latency, 239);
        // The first 720 samples went out undelayed; after them, 239 zeros, then the rest.
        assert_eq!(
            &out[..720],
            &(1..=720).map(|i| i as f32).collect::<Vec<_>>()[..]
        );
        assert!(out[720..959].iter().all(|&x| x == 0.0));
        assert_eq!(out[959], 721.0);
    }

    #[test]
    fn delay_line_delays() {
        let mut d = DelayLine::new(3);
        let mut out = [0.0; 4];
        d.process(&[1.0, 2.0, 3.0, 4.0], &mut out);
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0]);
        d.process(&[5.0, 6.0, 7.0, 8.0], &mut out);
        assert_eq!(out, [2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn far_queue_pads_with_silence_and_bounds_itself() {
        let mut q = FarQueue::new(4, 8);
        q.push(&[1.0, 2.0]);
        let mut f = [9.0; 4];
        q.take(&mut f);
        assert_eq!(f, [1.0, 2.0, 0.0, 0.0]);
        q.push(&[1.0; 12]);
        assert!(q.take_excess(&mut f));
        assert_eq!(q.len(), 8);
        assert!(!q.take_excess(&mut f));
    }
}
