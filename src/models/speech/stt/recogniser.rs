//! Which recogniser a checkpoint directory holds (Kyutai's STT or Whisper, told apart by
//! its config.json), loaded behind the one `SpeechToText` trait.

use super::kyutai::KyutaiStt;
use super::whisper::{self, Threading, WhisperStt};
use crate::bus::{Cancel, LoadProgress};
use crate::models::moshi::{Discovery, ModelLoadError};
use crate::models::parts::SpeechToText;
use crate::models::speech::files::{self as files, SttOptions};
use moshi::candle::Device;
use std::path::Path;

/// Load the recogniser in `dir`, whichever kind it is.
pub fn load_dir(
    dir: &Path,
    device: &Device,
    threading: Threading,
) -> Result<Box<dyn SpeechToText>, ModelLoadError> {
    if whisper::is_whisper_dir(dir) {
        Ok(Box::new(WhisperStt::load(dir, device, threading)?))
    } else {
        Ok(Box::new(KyutaiStt::load(dir, device)?))
    }
}

/// Find the recogniser as `opts` say (directory, HF cache, download) and load it.
pub fn open(
    opts: &SttOptions,
    disc: &Discovery,
    device: &Device,
    threading: Threading,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<Box<dyn SpeechToText>, ModelLoadError> {
    let dir = if opts.hf_repo.contains("whisper") && opts.model_dir.is_none() {
        files::find_whisper_dir(opts, disc, progress, cancel)?
    } else {
        files::find_stt_dir(opts, disc, progress, cancel)?
    };
    if !whisper::is_whisper_dir(&dir) {
        let cfg = files::stt_config(&dir)?;
        files::reading(&dir, cfg.lm_file(), progress, cancel)?;
    }
    load_dir(&dir, device, threading)
}
