//! The composition root: the only module that wires audio, engine, UI, personas and
//! journal together, from the command line. The front-ends (TUI, headless), `doctor`
//! and the benchmarks that run the whole path live here.

pub mod bench;
pub mod connect;
pub mod doctor;
pub mod engine_choice;
pub mod engine_figures;
pub mod first_start;
pub mod headless;
pub mod machine_profile;
pub mod say;
pub mod serve;
pub mod tools;
pub mod transcribe;
pub mod tui;
pub mod wake;

use crate::audio::aec::EchoOptions;
use crate::audio::device::DeviceError;
use crate::audio::meters::Meters;
use crate::audio::port::{FilePacer, InputPort};
use crate::audio::supervisor::{self, DeviceRequest, PortChange, Supervisor};
use crate::audio::wav::{read_wav, WavSink};
use crate::bus::{Cancel, Weights};
use crate::bus::{Endpoint, EngineEvent};
use crate::cli::{EngineKind, OnOff, RunArgs};
use crate::engine::load::{loader, LoadFailure, Loaded, Loader};
use crate::engine::loopback::Loopback;
use crate::engine::runner::EngineSetup;
use crate::engine::voice::VoiceLoader;
use crate::engine::{Command, EngineEvent as Ev};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;

/// An error that ends the run before it starts, with its exit code
/// (2: bad input from the user).
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

impl StartError {
    fn input(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

/// Everything a run holds on to: streams stop when this is dropped.
pub struct Wired {
    pub setup: EngineSetup,
    pub input: Endpoint,
    pub output: Endpoint,
    /// Warnings to show once the front-end is up (no microphone, ...).
    pub notices: Vec<EngineEvent>,
    /// The session's tools (cascade mode): the TUI answers their consent questions.
    pub tools: crate::tools::SharedTools,
    pub streams: Streams,
    /// With `--connect`: the session's network figures, once connected.
    pub link: connect::LinkFigures,
}

#[derive(Default)]
pub struct Streams {
    pub devices: Option<Supervisor>,
    pub pacer: Option<FilePacer>,
}

/// Build input, output and engine setup from the arguments. Bad input files
/// and unknown devices fail here, before any output file is created.
pub fn wire(
    args: &RunArgs,
    tui: bool,
    voice: Weights,
    shutdown: Cancel,
    meters: Arc<Meters>,
    events: Sender<Ev>,
    commands: (Sender<Command>, Receiver<Command>),
) -> Result<Wired, StartError> {
    let mut notices = Vec::new();
    let mut streams = Streams::default();
    // The MCP servers start with the session, before a paced file starts to play.
    let personas = crate::persona::Catalog::load().personas;
    let tools = tools::start(args, &personas, tui, events.clone(), &mut notices)?;
    let file_input = match &args.input {
        Some(path) => Some(read_wav(path).map_err(|e| StartError::input(e.to_string()))?),
        None => None,
    };
    // The wake spotter, before any device opens: `--wake` without takes is an error.
    let (wake, wake_warnings) = wake::gate_options(args, &personas).map_err(StartError::input)?;
    for w in wake_warnings {
        notices.push(EngineEvent::warning(format!("wake word: {w}"), None));
    }
    if let Some(w) = wake {
        // Queued ahead of everything else: the engine applies it in any state.
        let _ = commands.0.send(Command::InstallWake(Box::new(w)));
    }
    let want_speaker = tui || args.output.is_none() || args.output_device.is_some();
    let request = DeviceRequest {
        input: file_input.is_none().then(|| args.input_device.clone()),
        output: want_speaker.then(|| args.output_device.clone()),
    };
    let (port_cmds, status_events) = (commands.0.clone(), events.clone());
    let sinks = supervisor::Sinks {
        ports: Box::new(move |change| {
            let _ = port_cmds.send(match change {
                PortChange::Input(port) => Command::ReplaceInput(port),
                PortChange::Output(port) => Command::ReplaceSpeaker(port),
            });
        }),
        status: Box::new(move |status| {
            let _ = status_events.send(Ev::Device(status));
        }),
    };
    let (supervisor, opened) = supervisor::start(request, meters.clone(), sinks);
    streams.devices = Some(supervisor);

    let (input_port, input_ep) = match (file_input, opened.input) {
        (Some(audio), _) => {
            let ep = Endpoint::File(
                args.input
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            if tui || args.realtime {
                let (pacer, port) = FilePacer::start(audio, meters.clone());
                streams.pacer = Some(pacer);
                (port, ep)
            } else {
                (InputPort::Memory { audio, pos: 0 }, ep)
            }
        }
        (None, Some(Ok((port, name)))) => (port, Endpoint::Device(name)),
        (None, Some(Err(e @ DeviceError::NotFound { .. }))) => {
            return Err(StartError::input(e.to_string()))
        }
        (None, other) => {
            let reason = match other {
                Some(Err(e)) => e.to_string(),
                _ => "no input was requested".into(),
            };
            notices.push(EngineEvent::warning(
                format!("no microphone: {reason}"),
                Some("use --input FILE.wav to talk from a recording; a microphone that appears is picked up automatically".into()),
            ));
            (InputPort::silence(24_000), Endpoint::Missing(reason))
        }
    };

    let (speaker, output_ep) = match opened.output {
        Some(Ok((sp, name))) => (Some(sp), Endpoint::Device(name)),
        Some(Err(e @ DeviceError::NotFound { .. })) => {
            return Err(StartError::input(e.to_string()))
        }
        Some(Err(e)) => {
            let reason = e.to_string();
            let remedy = if args.output.is_none() {
                Some("use --output FILE.wav to keep what the assistant says".to_string())
            } else {
                None
            };
            notices.push(EngineEvent::warning(
                format!("no speaker: {reason}"),
                remedy,
            ));
            (None, Endpoint::Missing(reason))
        }
        None => (None, Endpoint::Off),
    };
    let output_ep = match (&args.output, output_ep) {
        (Some(p), Endpoint::Off | Endpoint::Missing(_)) => Endpoint::File(p.display().to_string()),
        (_, ep) => ep,
    };

    let wav_out = match &args.output {
        Some(p) => {
            Some(WavSink::create(p, 24_000).map_err(|e| StartError::input(format!("{e:#}")))?)
        }
        None => None,
    };

    // Echo is possible only when something is played to a speaker.
    // The loopback engine measures the raw path: no mic path unless asked for.
    let aec = args
        .aec
        .map_or(args.engine != EngineKind::Loopback, |a| a == OnOff::On);
    let wanted = aec || args.half_duplex || args.aec.is_some();
    let echo = speaker.as_ref().filter(|_| wanted).map(|_| EchoOptions {
        aec,
        half_duplex: args.half_duplex,
    });
    let link = connect::LinkFigures::default();
    // Lock step or not follows the input port's pacing, not the flags.
    let loader = match &args.connect {
        Some(url) => connect::loader(
            connect::options_for(args, url, input_port.is_realtime()),
            link.clone(),
        ),
        None => loader_with_tools(args, tools.clone()),
    };
    let setup = EngineSetup {
        loader,
        voice,
        input: input_port,
        speaker,
        wav_out,
        max_backlog: args.max_backlog,
        dump_tokens: args.model.dump_tokens.clone(),
        meters,
        events,
        commands: commands.1,
        idle_unload: args
            .idle_unload
            .filter(|s| *s > 0.0)
            .map(std::time::Duration::from_secs_f64),
        echo,
        shutdown,
    };
    Ok(Wired {
        setup,
        input: input_ep,
        output: output_ep,
        notices,
        tools,
        streams,
        link,
    })
}

/// The model the engine thread builds for a voice, at start and on every reload, for
/// a real-time input (`wire` builds a `--connect` loader for its own input's pacing).
pub fn loader_for(args: &RunArgs) -> Loader {
    loader_with_tools(args, Default::default())
}

/// `loader_for`, with the session's tools for the cascade's LLM.
pub fn loader_with_tools(args: &RunArgs, tools: crate::tools::SharedTools) -> Loader {
    if let Some(url) = &args.connect {
        // The "model" is a session on a remote server: connect on the first load, and
        // again on `r` after the connection fails.
        let opts = connect::options_for(args, url, true);
        return connect::loader(opts, connect::LinkFigures::default());
    }
    match args.engine {
        EngineKind::Loopback => {
            loader(|_| Ok(Loaded::plain(Box::new(Loopback::new(24_000, 1920)))))
        }
        EngineKind::Cascade => {
            let mut opts = args.cascade.options(&args.model);
            opts.tools = tools;
            loader(move |req| {
                let disc = crate::models::moshi::Discovery::from_env();
                let loaded = crate::engine::cascade::load::load_cascade(
                    &opts,
                    &disc,
                    req.progress,
                    req.cancel,
                )
                .map_err(load_failure)?;
                Ok(Loaded {
                    model: loaded.model,
                    notices: loaded.notices,
                    degraded: loaded.degraded,
                })
            })
        }
        EngineKind::Moshi => {
            let base = args.model.options();
            loader(move |req| {
                let o = base.with_weights(req.weights);
                let loaded = crate::models::moshi::load_model(&o, req.progress, req.cancel)
                    .map_err(load_failure)?;
                Ok(Loaded {
                    model: loaded.model,
                    notices: loaded.notices,
                    degraded: loaded.degraded,
                })
            })
        }
    }
}

/// A model load's error as the engine takes it (a cancelled load stays cancelled).
pub(crate) fn load_failure(e: crate::models::moshi::ModelLoadError) -> LoadFailure {
    if e.is_cancelled() {
        LoadFailure::cancelled()
    } else {
        LoadFailure {
            message: e.message,
            remedy: e.remedy,
        }
    }
}

/// The persona a run starts with, the catalog it comes from, and the run's
/// arguments with the persona's sampling filled in where the command line left it
/// open (explicit flags win). Its voice is `start_voice`.
pub struct StartPersona {
    pub catalog: crate::persona::Catalog,
    pub index: usize,
    pub args: RunArgs,
}

/// Whether the command line fixes the weights, so personas cannot change them.
pub fn weights_pinned(args: &RunArgs) -> bool {
    args.connect.is_some()
        || args.engine == EngineKind::Loopback
        // The cascade's voice is its TTS voice (the persona's `tts_voice`), not weights.
        || args.engine == EngineKind::Cascade
        || args.model.demo
        || args.model.model_dir.is_some()
}

pub fn start_persona(
    args: &RunArgs,
    catalog: crate::persona::Catalog,
) -> Result<StartPersona, StartError> {
    let index = match &args.persona {
        None => 0,
        Some(name) => catalog.find(name).ok_or_else(|| {
            StartError::input(format!(
                "no persona named {name:?}; there are: {}",
                catalog.names()
            ))
        })?,
    };
    if catalog.personas.is_empty() {
        return Err(StartError {
            code: 1,
            message: "no usable persona (the built-ins failed to parse: a bug)".into(),
        });
    }
    let mut catalog = catalog;
    let mut args = args.clone();
    let m = &mut args.model;
    let p = &mut catalog.personas[index];
    let v = &mut p.voice;
    // Explicit sampling flags win, and stick to the start persona.
    v.temperature = *m.temperature.get_or_insert(v.temperature);
    v.text_temperature = *m.text_temperature.get_or_insert(v.text_temperature);
    v.top_k = *m.top_k.get_or_insert(v.top_k);
    // Its prompts prime a model that takes them; --text-prompt / --voice-prompt win.
    m.text_prompt.get_or_insert_with(|| p.prompt.clone());
    if m.voice_prompt.is_none() {
        m.voice_prompt = p.voice_prompt.clone();
    }
    // The cascade's voice and LLM model; --tts-voice / --llm-model win. A persona's
    // `tts_voice` names one of Kyutai's voices: Pocket TTS (the default) takes it only
    // when it is Pocket's own (a predefined name or a file), else it speaks its default.
    let c = &mut args.cascade;
    if c.tts_voice.is_none() {
        let pocket = c.tts == crate::cli::TtsKind::Pocket;
        c.tts_voice = p.tts_voice.clone().filter(|v| !pocket || pocket_takes(v));
    }
    c.persona_tools = p.tools.clone();
    if c.llm_model.is_none() {
        c.llm_model = p.llm_model.clone();
    }
    Ok(StartPersona {
        catalog,
        index,
        args,
    })
}

/// Whether Pocket TTS can speak with `voice`: one of its predefined voices, or a file.
fn pocket_takes(voice: &str) -> bool {
    crate::models::speech::tts::pocket::voice::is_predefined(voice)
        || std::path::Path::new(voice).is_file()
}

/// Loads other personas' voices in the background, unless the command line
/// pins the weights. `original` is the command line before the start persona
/// filled it in: its weights are what a persona with `weights = "default"` gets.
pub fn voice_loader_for(original: &RunArgs) -> Option<VoiceLoader> {
    if weights_pinned(original) {
        return None;
    }
    let base = original.model.options();
    let load = move |w: &Weights,
                     s: &crate::bus::Sampling,
                     progress: &mut dyn FnMut(crate::bus::LoadProgress),
                     cancel: &Cancel| {
        let mut o = base.with_weights(w);
        o.sampling = s.clone();
        let loaded =
            crate::models::moshi::load_model(&o, progress, cancel).map_err(load_failure)?;
        // The search falls back to the demo model; a persona asked for real weights.
        if *w != Weights::Demo && loaded.fell_back_to_demo {
            let why = loaded.notices.first().map_or_else(
                || "its weights were not found".to_string(),
                |n| n.message.clone(),
            );
            return Err(LoadFailure {
                message: why,
                remedy: format!(
                    "download {} (or point voice.weights at a model directory)",
                    w.describe()
                ),
            });
        }
        Ok(loaded.model)
    };
    Some(VoiceLoader::new(
        Weights::Repo(original.model.hf_repo.clone()),
        Arc::new(load),
    ))
}

/// The voice the engine loads first: the start persona's, resolved as the voice
/// loader resolves it, or the command line's when it pins the weights.
pub fn start_voice(start: &StartPersona, voices: Option<&VoiceLoader>) -> Weights {
    match voices {
        Some(v) => v.resolve(&start.catalog.personas[start.index].voice.weights),
        None => Weights::Default,
    }
}

/// `export-demo` and the model benchmarks (`bench model`, `bench gpu`); `None` for any
/// other command.
pub fn model_command(cli: &crate::cli::Cli) -> Option<i32> {
    use crate::cli::{BenchWhat, Cmd};
    use crate::models::moshi::{self, files};
    let result = match &cli.command {
        Some(Cmd::ExportDemo(args)) => args
            .format()
            .map_err(anyhow::Error::msg)
            .and_then(|format| moshi::export_demo(&args.dir, format))
            .map(|()| {
                let lm = if args.q8 {
                    files::LM_GGUF
                } else {
                    files::LM_SAFETENSORS
                };
                println!(
                    "wrote the demo model to {} ({lm}); load it with --model-dir {}",
                    args.dir.display(),
                    args.dir.display()
                );
            }),
        Some(Cmd::Convert(args))
            if crate::models::speech::stt::quant::is_stt_checkpoint(&args.src) =>
        {
            convert_stt(args)
        }
        Some(Cmd::Convert(args)) if args.q4 => Err(anyhow::anyhow!(
            "{}: --q4 converts Kyutai STT checkpoints only (its config.json has the keys of kyutai/stt-1b-en_fr-candle); use --q8 for PersonaPlex",
            args.src.display()
        )),
        Some(Cmd::Convert(args)) => {
            let mut shown = 0;
            moshi::personaplex::convert::convert_personaplex_q8(&args.src, &args.dst, &mut |i, n| {
                if i * 10 / n > shown || i == n {
                    shown = i * 10 / n;
                    eprintln!("converting: {i}/{n} tensors");
                }
            })
            .map(|c| {
                println!(
                    "wrote {} ({} tensors, {:.2} GB, q8) and {} voices to {}; load it with --model-dir {}",
                    files::LM_GGUF,
                    c.tensors,
                    c.lm_bytes as f64 / 1e9,
                    c.voices,
                    args.dst.display(),
                    args.dst.display()
                );
            })
        }
        Some(Cmd::Bench(b)) if b.what == BenchWhat::Model => {
            crate::app::bench::model::bench_model(&mut std::io::stdout())
        }
        Some(Cmd::Bench(b)) if b.what == BenchWhat::Gpu => {
            crate::app::bench::gpu::run(&b.gpu, &cli.run.model.options(), &mut std::io::stdout())
        }
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", moshi::describe_error(&e));
            2
        }
    })
}

/// `convert SRC DST --q8|--q4` for a Kyutai STT checkpoint.
fn convert_stt(args: &crate::cli::ConvertArgs) -> anyhow::Result<()> {
    use crate::models::speech::stt::quant::{convert_stt, SttFormat};
    let format = if args.q4 {
        SttFormat::Q4
    } else {
        SttFormat::Q8
    };
    let mut shown = 0;
    let c = convert_stt(&args.src, &args.dst, format, &mut |i, n| {
        if i * 10 / n > shown || i == n {
            shown = i * 10 / n;
            eprintln!("converting: {i}/{n} tensors");
        }
    })?;
    println!(
        "wrote {} ({} tensors, {:.2} GB, {}) to {}; use it with --engine cascade --stt-model-dir {}",
        c.file,
        c.tensors,
        c.lm_bytes as f64 / 1e9,
        format.label(),
        args.dst.display(),
        args.dst.display()
    );
    Ok(())
}
