//! Tuning harness: runs the canceller over scenes with settings overrides and prints the
//! scores. usage: aec_tune OUT_DIR SCENE_DIR... [key=value...]
use assistant::audio::aec::{command::process_offline, score, AecSettings};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out_dir = PathBuf::from(&args[0]);
    let mut s = AecSettings::default();
    let mut scenes = vec![];
    let mut trace = false;
    let mut gain = 1.0f32;
    for a in &args[1..] {
        let Some((k, v)) = a.split_once('=') else {
            scenes.push(PathBuf::from(a));
            continue;
        };
        let f: f32 = v.parse().unwrap_or(0.0);
        let c = &mut s.config;
        match k {
            "shadow_ms" => s.shadow_ms = Some(f),
            "initial_ms" => s.initial_ms = Some(f),
            "trace" => trace = v == "1",
            "gain" => gain = f,
            "filter_ms" => s.filter_ms = f,
            "ns" => {
                s.noise_suppression = match v {
                    "0" => None,
                    "6" => Some(aec3::audio_processing::ns::SuppressionLevel::K6dB),
                    "12" => Some(aec3::audio_processing::ns::SuppressionLevel::K12dB),
                    "18" => Some(aec3::audio_processing::ns::SuppressionLevel::K18dB),
                    _ => Some(aec3::audio_processing::ns::SuppressionLevel::K21dB),
                }
            }
            "lf_tr" => c.suppressor.normal_tuning.mask_lf.enr_transparent = f,
            "lf_sup" => c.suppressor.normal_tuning.mask_lf.enr_suppress = f,
            "lf_emr" => c.suppressor.normal_tuning.mask_lf.emr_transparent = f,
            "hf_tr" => c.suppressor.normal_tuning.mask_hf.enr_transparent = f,
            "hf_sup" => c.suppressor.normal_tuning.mask_hf.enr_suppress = f,
            "hf_emr" => c.suppressor.normal_tuning.mask_hf.emr_transparent = f,
            "ne_lf_tr" => c.suppressor.nearend_tuning.mask_lf.enr_transparent = f,
            "ne_lf_sup" => c.suppressor.nearend_tuning.mask_lf.enr_suppress = f,
            "ne_hf_tr" => c.suppressor.nearend_tuning.mask_hf.enr_transparent = f,
            "ne_hf_sup" => c.suppressor.nearend_tuning.mask_hf.enr_suppress = f,
            "max_dec" => c.suppressor.normal_tuning.max_dec_factor_lf = f,
            "max_inc" => c.suppressor.normal_tuning.max_inc_factor = f,
            "default_gain" => c.ep_strength.default_gain = f,
            "default_len" => c.ep_strength.default_len = f,
            "nearend_len" => c.ep_strength.nearend_len = f,
            "erle_max_l" => c.erle.max_l = f,
            "erle_max_h" => c.erle.max_h = f,
            "erle_min" => c.erle.min = f,
            "dn_enr" => c.suppressor.dominant_nearend_detection.enr_threshold = f,
            "dn_exit" => c.suppressor.dominant_nearend_detection.enr_exit_threshold = f,
            "dn_snr" => c.suppressor.dominant_nearend_detection.snr_threshold = f,
            "dn_hold" => c.suppressor.dominant_nearend_detection.hold_duration = f as usize,
            "dn_trig" => c.suppressor.dominant_nearend_detection.trigger_threshold = f as usize,
            "transparent" => c.transparent_mode.enabled = v == "1",
            "bounded_erl" => c.ep_strength.bounded_erl = v == "1",
            "saturate" => c.ep_strength.echo_can_saturate = v == "1",
            "linear_stable" => c.echo_removal_control.linear_and_stable_echo_path = v == "1",
            "shadow_rate" => c.filter.shadow.rate = f,
            "leak_conv" => c.filter.main.leakage_converged = f,
            "leak_div" => c.filter.main.leakage_diverged = f,
            "err_floor" => c.filter.main.error_floor = f,
            "num_sections" => c.erle.num_sections = f as usize,
            "onset" => c.erle.onset_detection = v == "1",
            "conservative_hf" => c.suppressor.conservative_hf_suppression = v == "1",
            "hb_max_gain" => c.suppressor.high_bands_suppression.max_gain_during_echo = f,
            "hb_enr" => c.suppressor.high_bands_suppression.enr_threshold = f,
            "subband_ne" => c.suppressor.use_subband_nearend_detection = v == "1",
            "initial_s" => c.filter.initial_state_seconds = f,
            "room" => {
                if v == "0" {
                    s.room = None
                }
            }
            "span_ms" => s.room.as_mut().unwrap().span_ms = f,
            "lead_ms" => s.room.as_mut().unwrap().lead_ms = f,
            "step" => s.room.as_mut().unwrap().step = f,
            "max_hz" => s.room.as_mut().unwrap().max_hz = f,
            "ds" => c.delay.down_sampling_factor = f as usize,
            "num_filters" => c.delay.num_filters = f as usize,
            "copy_ratio" => s.room.as_mut().unwrap().copy_ratio = f,
            "copy_blend" => s.room.as_mut().unwrap().copy_blend = f,
            "dt_ratio" => s.room.as_mut().unwrap().dt_ratio = f,
            _ => anyhow::bail!("unknown key {k}"),
        }
    }
    if trace {
        for dir in &scenes {
            let scene = score::load_scene(dir)?;
            let mut aec = assistant::audio::aec::EchoCanceller::new(&s)?;
            for (i, block) in scene.mic.chunks(1920).enumerate() {
                let at = i * 1920;
                let far: Vec<f32> = scene.far[at..(at + block.len()).min(scene.far.len())]
                    .iter()
                    .map(|&x| x as f32)
                    .collect();
                let mut b: Vec<f32> = block.iter().map(|&x| x as f32).collect();
                aec.push_far(&far);
                aec.process_near(&mut b);
                let st = aec.stats();
                if i % 3 == 0 {
                    print!(
                        "{:.2}s d{} e{:.0} | ",
                        at as f64 / 24000.0,
                        st.delay_ms,
                        st.erle_db
                    );
                }
            }
            println!();
        }
    }
    for dir in scenes {
        let scene = score::load_scene(&dir)?;
        let far: Vec<f32> = scene.far.iter().map(|&x| x as f32 * gain).collect();
        let mic: Vec<f32> = scene.mic.iter().map(|&x| x as f32 * gain).collect();
        let mut run = process_offline(&s, &far, &mic, 1920)?;
        run.output.iter_mut().for_each(|x| *x /= gain);
        let sc = score::score(&scene, &run.output);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assistant::audio::aec::wav::write_f32(
            &out_dir.join(format!("{name}.wav")),
            24_000,
            &run.output,
        )?;
        println!("{name:>10}: erle {:6.2} near {:6.2} dt {:.3} lag {:.2} | cpu {:.1} ms/s, delay est {} ms, room {:?}", sc.erle_db, sc.near_ssnr_db.unwrap_or(f64::NAN), sc.double_talk_corr.unwrap_or(f64::NAN), sc.lag_ms, run.cpu_ms_per_s(), run.delay_ms, run.room_delay_ms);
    }
    Ok(())
}
