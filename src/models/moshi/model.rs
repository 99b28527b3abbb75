//! `MoshiModel`: Mimi encode -> LM multistream step -> Mimi decode, behind `DuplexModel`.

use super::batched::{BatchCore, Hub, HubHold, Slot};
use super::placed_lm::PlacedLm;
use super::sampling::Samplers;
use super::stepper::Stepper;
use super::text::TextAssembler;
use crate::bus::{ModelInfo, Sampling};
use crate::models::duplex::{DuplexModel, StepOutput};
use anyhow::{Context, Result};
use moshi::candle::{Device, IndexOp, Tensor};
use moshi::mimi::Mimi;
use moshi::StreamTensor;

/// Where the LM steps: alone, or in a batch (`serve --batch`).
enum Lm {
    Alone(Box<Stepper>),
    /// The loaded batched model: it only hands out slots (`fork`).
    Hub(HubHold),
    /// A session's slot in the batch.
    Slot(Slot),
}

pub struct MoshiModel {
    mimi: Mimi,
    lm: Lm,
    delay: usize,
    text: TextAssembler,
    sampling: Sampling,
    samplers: Samplers,
    /// Settings to apply at the start of the next step.
    pending: Option<Sampling>,
    info: ModelInfo,
    device: Device,
    frame_len: usize,
    input_codebooks: usize,
}

impl MoshiModel {
    pub fn new(
        mimi: Mimi,
        lm: PlacedLm,
        gen: moshi::lm_generate_multistream::Config,
        text: TextAssembler,
        sampling: Sampling,
        info: ModelInfo,
        device: Device,
    ) -> Self {
        let cfg = mimi.config();
        let frame_len = (cfg.sample_rate / cfg.frame_rate).round() as usize;
        let input_codebooks = gen.input_audio_codebooks;
        Self {
            mimi,
            delay: gen.acoustic_delay,
            lm: Lm::Alone(Box::new(Stepper::new(lm, gen))),
            text,
            samplers: Samplers::new(&sampling),
            sampling,
            pending: None,
            info,
            device,
            frame_len,
            input_codebooks,
        }
    }

    /// The model with a batched LM (`PlacedLm::new_batched`): it steps nothing itself;
    /// each `fork` takes one of its slots, until all are taken (then `fork` gives
    /// `None`), and steps with the others (`batched`).
    pub fn batched(
        mimi: Mimi,
        lm: PlacedLm,
        gen: moshi::lm_generate_multistream::Config,
        text: TextAssembler,
        sampling: Sampling,
        info: ModelInfo,
        device: Device,
    ) -> Result<Self> {
        let cfg = mimi.config();
        let frame_len = (cfg.sample_rate / cfg.frame_rate).round() as usize;
        let input_codebooks = gen.input_audio_codebooks;
        let delay = gen.acoustic_delay;
        let hub = Hub::start(BatchCore::new(lm, gen, &sampling)?)?;
        Ok(Self {
            mimi,
            lm: Lm::Hub(HubHold(hub)),
            delay,
            text,
            samplers: Samplers::new(&sampling),
            sampling,
            pending: None,
            info,
            device,
            frame_len,
            input_codebooks,
        })
    }

    /// Steps taken since the start or the last reset.
    pub fn step_idx(&self) -> usize {
        match &self.lm {
            Lm::Alone(s) => s.step_idx(),
            Lm::Slot(s) => s.steps(),
            Lm::Hub(_) => 0,
        }
    }

    /// The batch this model steps in: its slots and the stepper's counters.
    pub fn batch(&self) -> Option<(usize, super::batched::BatchStats)> {
        let hub = match &self.lm {
            Lm::Alone(_) => return None,
            Lm::Hub(h) => &h.0,
            Lm::Slot(s) => s.hub(),
        };
        Some((hub.slots(), hub.stats()))
    }
}

impl DuplexModel for MoshiModel {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn sample_rate(&self) -> u32 {
        self.mimi.config().sample_rate as u32
    }

    fn frame_len(&self) -> usize {
        self.frame_len
    }

    fn delay_frames(&self) -> usize {
        self.delay
    }

    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> Result<()> {
        if pcm_in.len() != self.frame_len {
            anyhow::bail!(
                "expected a frame of {} samples, got {}",
                self.frame_len,
                pcm_in.len()
            );
        }
        if let Some(s) = self.pending.take() {
            self.samplers = Samplers::new(&s);
            if let Lm::Slot(slot) = &mut self.lm {
                slot.set_sampling(&s);
            }
            self.sampling = s;
        }
        if out.pcm.len() != self.frame_len {
            out.pcm.resize(self.frame_len, 0.0);
        }
        let pcm = Tensor::from_slice(pcm_in, (1, 1, self.frame_len), &self.device)?;
        let codes = self
            .mimi
            .encode_step(&pcm.into(), &().into())
            .context("Mimi encode")?;
        // Mimi returns nothing until it has a whole frame; the engine always feeds whole
        // frames, so this only happens with a non-standard Mimi config.
        let Some(codes) = codes.as_option() else {
            return Ok(());
        };
        let codes: Vec<u32> = codes.i((0, .., 0))?.to_vec1()?;
        let codes = &codes[..self.input_codebooks.min(codes.len())];
        let (text_token, audio) = match &mut self.lm {
            Lm::Alone(stepper) => {
                let t = stepper.step(codes, &mut self.samplers).context("LM step")?;
                (t, stepper.last_audio_tokens().map(<[u32]>::to_vec))
            }
            Lm::Slot(slot) => {
                let o = slot.step(codes).context("batched LM step")?;
                (o.text, o.audio)
            }
            Lm::Hub(_) => {
                anyhow::bail!("a batched model steps only in its sessions (fork it first)")
            }
        };
        out.text_token = Some(text_token);
        out.text = self.text.push(text_token);
        if let Some(audio) = audio {
            decode_into(&mut self.mimi, &self.device, audio, out)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.mimi.reset_state();
        self.text.reset();
        if let Some(s) = self.pending.take() {
            self.sampling = s;
        }
        self.samplers = Samplers::new(&self.sampling);
        match &mut self.lm {
            Lm::Alone(s) => s.reset(),
            Lm::Slot(s) => s.reset(&self.sampling),
            Lm::Hub(_) => {}
        }
    }

    fn set_sampling(&mut self, sampling: &Sampling) {
        self.pending = Some(sampling.clone());
    }

    fn batch_stats(&self) -> Option<super::batched::BatchStats> {
        self.batch().map(|(_, stats)| stats)
    }

    fn fork(&self) -> Option<Box<dyn DuplexModel>> {
        let mut mimi = self.mimi.clone();
        mimi.reset_state();
        let mut text = self.text.clone();
        text.reset();
        let lm = match &self.lm {
            Lm::Alone(s) => Lm::Alone(Box::new(s.fork())),
            // A session that just ended may be letting go of its slot: wait a little.
            Lm::Hub(h) => Lm::Slot(h.0.join(SLOT_WAIT)?),
            Lm::Slot(s) => Lm::Slot(s.hub().join(SLOT_WAIT)?),
        };
        let lm = match lm {
            // Fresh samplers at its first step, not the slot's last session's.
            Lm::Slot(mut s) => {
                s.reset(&self.sampling);
                Lm::Slot(s)
            }
            other => other,
        };
        Some(Box::new(Self {
            mimi,
            lm,
            delay: self.delay,
            text,
            sampling: self.sampling.clone(),
            samplers: Samplers::new(&self.sampling),
            pending: None,
            info: self.info.clone(),
            device: self.device.clone(),
            frame_len: self.frame_len,
            input_codebooks: self.input_codebooks,
        }))
    }
}

/// How long `fork` of a batched model waits for a slot to come free.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Decode one step's audio codes with Mimi into `out.pcm` (as much as it gives) and
/// record the codes; shared by every Moshi-family model.
pub(super) fn decode_into(
    mimi: &mut Mimi,
    device: &Device,
    audio: Vec<u32>,
    out: &mut StepOutput,
) -> Result<()> {
    let t = Tensor::from_slice(&audio, (1, audio.len(), 1), device)?;
    let pcm = mimi
        .decode_step(&StreamTensor::from_tensor(t), &().into())
        .context("Mimi decode")?;
    if let Some(pcm) = pcm.as_option() {
        let pcm: Vec<f32> = pcm.flatten_all()?.to_vec1()?;
        let n = pcm.len().min(out.pcm.len());
        out.pcm[..n].copy_from_slice(&pcm[..n]);
    }
    out.audio_codes = Some(audio);
    Ok(())
}
