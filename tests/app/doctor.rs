//! `assistant doctor`: one report, a fix for each problem, exit 0 only when a
//! conversation can run.

use crate::common;
use crate::personaplex_common;
use common::*;

#[test]
fn doctor_without_a_microphone_fails_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = assistant(tmp.path())
        .env("HOME", tmp.path())
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[FAIL] no microphone"), "{text}");
    assert!(
        text.contains("fix: connect a microphone") && text.contains("--input FILE.wav"),
        "{text}"
    );
    assert!(text.contains("CPU backend: compiled, present"), "{text}");
    assert!(
        text.contains("memory: ") && text.contains("GiB available"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "log file: {}",
            tmp.path().join("state/assistant/assistant.log").display()
        )),
        "{text}"
    );
    assert!(text.contains("not ready: 1 problem(s)"), "{text}");
}

#[test]
fn doctor_with_working_audio_devices_is_ready() {
    let tmp = tempfile::tempdir().unwrap();
    alsa_home(tmp.path());
    let out = assistant(tmp.path())
        .env("HOME", tmp.path())
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("[ ok ] microphone: ") && text.contains("[ ok ] speaker: "),
        "{text}"
    );
    assert!(text.contains("ready: assistant can run"), "{text}");
}

/// Doctor says whether the weights fit the device, with the plan a load would use, and
/// fails (with the fix) when they cannot run at all.
#[test]
fn doctor_says_whether_the_weights_fit() {
    let tmp = tempfile::tempdir().unwrap();
    alsa_home(tmp.path());
    let model = tmp.path().join("model");
    assert!(assistant(tmp.path())
        .args(["export-demo", "--q8"])
        .arg(&model)
        .status()
        .unwrap()
        .success());
    let doctor = |extra: &[&str]| {
        let out = assistant(tmp.path())
            .env("HOME", tmp.path())
            .args(["doctor", "--device", "cpu", "--model-dir"])
            .arg(&model)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = doctor(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("[ ok ] fits cpu: context 3000 steps (240 s); LM "),
        "{text}"
    );
    let (code, text) = doctor(&["--max-memory", "0.01"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("[FAIL] out of memory on cpu: the model does not fit: LM ")
            && text.contains("of 10.2 MiB"),
        "{text}"
    );
    assert!(
        text.contains("fix: free memory, use a smaller --context"),
        "{text}"
    );
}

/// Doctor looks where a run looks: the Hugging Face cache under HF_HOME, and says where a
/// run would download from when the cache has nothing.
#[test]
fn doctor_reports_the_hf_cache_and_the_download_source() {
    let tmp = tempfile::tempdir().unwrap();
    alsa_home(tmp.path());
    let hf = tmp.path().join("hf");
    let doctor = |extra: &[(&str, &str)]| {
        let mut c = assistant(tmp.path());
        c.env("HOME", tmp.path())
            .env("HF_HOME", &hf)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_HUB_OFFLINE")
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .args(["doctor", "--device", "cpu"]);
        for (k, v) in extra {
            c.env(k, v);
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let text = doctor(&[]);
    assert!(
        text.contains(&format!(
            "[warn] kyutai/moshiko-candle-q8 is not in the Hugging Face cache ({}): a run with --engine moshi downloads it from http://127.0.0.1:9",
            hf.join("hub").display()
        )),
        "{text}"
    );
    let text = doctor(&[("HF_HUB_OFFLINE", "1")]);
    assert!(
        text.contains("a run with --engine moshi uses the demo model"),
        "{text}"
    );

    // A snapshot in the cache, as a download leaves it.
    let root = hf.join("hub/models--kyutai--moshiko-candle-q8");
    assert!(assistant(tmp.path())
        .args(["export-demo", "--q8"])
        .arg(root.join("snapshots/abc"))
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), "abc").unwrap();
    let text = doctor(&[]);
    assert!(
        text.contains(&format!(
            "[ ok ] kyutai/moshiko-candle-q8 in the Hugging Face cache: {} (model.q8.gguf, 1.5 MiB)",
            root.join("snapshots/abc").display()
        )),
        "{text}"
    );
    assert!(text.contains("[ ok ] fits cpu: context "), "{text}");
}

/// A PersonaPlex checkpoint: doctor says it takes prompts, plans its 16-slice depformer,
/// and lists the voices a persona can name (or says how to get them).
#[test]
fn doctor_reports_a_personaplex_checkpoint_and_its_voices() {
    let tmp = tempfile::tempdir().unwrap();
    alsa_home(tmp.path());
    let model = tmp.path().join("plex");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(
        personaplex_common::fixtures().join("personaplex/model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    personaplex_common::complete_checkpoint(&model);
    let doctor = || {
        let out = assistant(tmp.path())
            .env("HOME", tmp.path())
            .env_remove("ASSISTANT_VOICES_DIR")
            .args(["doctor", "--device", "cpu", "--model-dir"])
            .arg(&model)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = doctor();
    assert!(
        text.contains(
            "[warn] PersonaPlex: takes a role text and a voice (16 depformer slices); voices in "
        ) && text.contains("plex/voices: none"),
        "{text}"
    );
    assert!(text.contains("voices.tgz"), "the fix: {text}");
    assert!(text.contains("[ ok ] fits cpu: context"), "{text}");
    std::fs::create_dir(model.join("voices")).unwrap();
    std::fs::copy(
        personaplex_common::fixtures().join("personaplex/voice.pt"),
        model.join("voices/NATF0.pt"),
    )
    .unwrap();
    let text = doctor();
    assert!(
        text.contains(
            "[ ok ] PersonaPlex: takes a role text and a voice (16 depformer slices); voices in "
        ) && text.contains("plex/voices: NATF0"),
        "{text}"
    );
}

#[test]
fn doctor_for_the_cascade_says_where_each_part_loads_from_and_their_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let stt = tmp.path().join("stt");
    let tts = tmp.path().join("tts");
    assistant::models::speech::synthetic::write_stt(&stt, 1).unwrap();
    assistant::models::speech::synthetic::write_tts(&tts, 2).unwrap();
    let doctor = |extra: &[&str]| {
        let out = assistant(tmp.path())
            .env("HOME", tmp.path())
            .env("HF_HOME", tmp.path().join("hf"))
            .env("HF_HUB_OFFLINE", "1")
            .args(["doctor", "--engine", "cascade"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Nothing here and no downloads: each missing part fails with its fix. The
    // default recogniser is Whisper base.en (it keeps up on two cores).
    let text = doctor(&[]);
    assert!(
        text.contains(
            "[FAIL] speech-to-text: openai/whisper-base.en is not in the Hugging Face cache"
        ),
        "{text}"
    );
    let text2 = doctor(&["--stt", "kyutai"]);
    assert!(
        text2.contains(
            "[FAIL] speech-to-text: kyutai/stt-1b-en_fr-candle is not in the Hugging Face cache"
        ),
        "{text2}"
    );
    // The default synthesiser is Pocket TTS.
    assert!(
        text.contains("[FAIL] text-to-speech: kyutai/pocket-tts-without-voice-cloning"),
        "{text}"
    );
    assert!(text.contains("fix: unset HF_HUB_OFFLINE"), "{text}");
    let text = doctor(&["--tts", "kyutai"]);
    assert!(
        text.contains("[FAIL] text-to-speech: kyutai/tts-1.6b-en_fr"),
        "{text}"
    );
    // Directories given, and a server for the LLM: found, with the memory they take.
    let text = doctor(&[
        "--stt-model-dir",
        stt.to_str().unwrap(),
        "--tts",
        "kyutai",
        "--tts-model-dir",
        tts.to_str().unwrap(),
        "--llm-url",
        "http://127.0.0.1:11434/v1",
    ]);
    assert!(
        text.contains(&format!("[ ok ] speech-to-text: {} (about", stt.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("[ ok ] text-to-speech: {} (about", tts.display())),
        "{text}"
    );
    assert!(
        text.contains("LLM: the server at http://127.0.0.1:11434/v1"),
        "{text}"
    );
    assert!(text.contains("the three parts together: about"), "{text}");
    // A directory that is not a checkpoint is named.
    let text = doctor(&[
        "--stt",
        "kyutai",
        "--stt-model-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        text.contains("is not a checkpoint in the layout of kyutai/stt-1b-en_fr-candle"),
        "{text}"
    );
}

/// Doctor says which engine a run without an engine flag would pick here, and why:
/// the step time against the 80 ms budget and the memory.
#[test]
fn doctor_says_which_engine_it_would_pick_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    alsa_home(tmp.path());
    let doctor = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = assistant(tmp.path());
        c.env("HOME", tmp.path())
            .env("HF_HOME", tmp.path().join("hf"))
            .env_remove("HF_HUB_CACHE")
            .env_remove("ASSISTANT_CONNECT")
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .arg("doctor")
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let text = doctor(&["--device", "cpu"], &[]);
    let line = text
        .lines()
        .find(|l| l.contains("engine: "))
        .unwrap_or_else(|| panic!("no engine line:\n{text}"));
    eprintln!("{line}");
    // Without a GPU: the cascade (or, with under 1.4 GiB free, the demo), and Moshi's
    // step time as the reason.
    assert!(
        line.contains("[warn] engine: CPU cascade (--device cpu; Moshi 7B q8 would take ~")
            || line
                .contains("[ ok ] engine: the demo model (--device cpu; Moshi 7B q8 would take ~"),
        "{line}"
    );
    assert!(line.contains(" ms a step against 80 ms"), "{line}");
    // And which engine can call tools.
    assert!(
        text.contains("[ ok ] tools: the CPU cascade can call tools")
            || text.contains("[ ok ] tools: the demo model cannot call tools"),
        "{text}"
    );
    assert!(
        text.contains("fix: the first `assistant` asks which engine"),
        "{text}"
    );
    // A configured server is the choice.
    let text = doctor(&[], &[("ASSISTANT_CONNECT", "ws://10.0.0.2:8998")]);
    assert!(
        text.contains("[ ok ] engine: the server at ws://10.0.0.2:8998 (a server is configured (ASSISTANT_CONNECT))"),
        "{text}"
    );
    assert!(
        text.contains(
            "[ ok ] tools: none through a server (--connect); the CPU cascade can call tools"
        ),
        "{text}"
    );
    // An engine flag: doctor still says what the choice would be, and that the flag wins.
    let text = doctor(&["--engine", "cascade", "--device", "cpu"], &[]);
    assert!(
        text.contains("engine: CPU cascade (--device cpu;")
            || text.contains("engine: the demo model"),
        "{text}"
    );
    assert!(
        text.contains("[ ok ] the command line names an engine: a run with it uses that one"),
        "{text}"
    );
}
