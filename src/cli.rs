//! Command-line definitions (clap), converted to the engine's plain options at the edge.

use crate::bus::Sampling;
use crate::models::moshi::{DeviceChoice, ModelOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "assistant",
    version,
    about = "A full-duplex voice assistant for your terminal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List audio hosts, input and output devices and their default configs.
    Devices,
    /// Write the built-in demo model in the official checkpoint layout.
    ExportDemo(ExportDemoArgs),
    /// Convert a PersonaPlex checkpoint into our layout with a q8 LM (fits a 10-12 GB card),
    /// or a Kyutai STT checkpoint to a q8 or q4 LM (faster on a CPU).
    Convert(ConvertArgs),
    /// Benchmarks that print figures.
    Bench(BenchArgs),
    /// Run the echo canceller over a far-end/microphone WAV pair and print its figures.
    Aec(AecArgs),
    /// List journalled sessions, or print one as Markdown.
    History(HistoryArgs),
    /// Check audio, compute backends, memory, weights, personas and paths.
    Doctor,
    /// Serve the engine to remote clients over Kyutai's WebSocket protocol (/api/chat).
    Serve(ServeArgs),
    /// List every persona with its hotkey, source file and validity, or check one file.
    Personas(PersonasArgs),
    /// Speak TEXT through the cascade's synthesiser (Pocket TTS by default): to --output
    /// FILE.wav, else on the output device. Takes the --tts-* flags.
    Say(SayArgs),
    /// Print the words the cascade's recogniser hears in a WAV file, with the time each
    /// was given out (takes --stt-model-dir, --demo, --device).
    Transcribe(TranscribeArgs),
    /// The wake word: record takes of a persona's name, or test the spotter on a WAV.
    Wake(WakeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WakeArgs {
    #[command(subcommand)]
    pub command: WakeCmd,
    /// Where the takes live (default: $XDG_CONFIG_HOME/assistant/wake).
    #[arg(long, global = true, value_name = "DIR")]
    pub takes: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WakeCmd {
    /// Record takes of a wake phrase from the microphone (--input-device picks it).
    Record {
        /// The phrase, e.g. jarvis or "hey jarvis".
        phrase: String,
        /// How many takes to record.
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// Seconds each take lasts.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Add takes of a wake phrase from WAV files you recorded elsewhere.
    Add {
        phrase: String,
        #[arg(value_name = "FILE.wav", required = true)]
        files: Vec<PathBuf>,
    },
    /// List the phrases each persona answers to and how many takes each has.
    List,
    /// Run the spotter over a recording and print each detection: time, name, score.
    Test {
        #[arg(value_name = "FILE.wav")]
        file: PathBuf,
        /// Only this persona's phrases (default: every persona's).
        #[arg(long)]
        persona: Option<String>,
        /// Detection threshold, 0..1 (default: the spotter's).
        #[arg(long)]
        threshold: Option<f32>,
        /// Print JSON: each detection, and each phrase's best score (for tuning).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TranscribeArgs {
    /// The recording (any rate, channels and bit depth).
    #[arg(value_name = "FILE.wav")]
    pub file: PathBuf,
    /// Print JSON: the words with their times, the ends of speech and the whole text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SayArgs {
    /// What to say.
    pub text: String,
}

/// `--stt`: which recogniser the cascade downloads when no directory is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SttKind {
    /// OpenAI's Whisper base.en (openai/whisper-base.en), streaming on its own thread.
    Whisper,
    /// Kyutai's STT 1B (kyutai/stt-1b-en_fr-candle).
    Kyutai,
}

/// `--tts`: which synthesiser the cascade (and `say`) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TtsKind {
    /// Kyutai's Pocket TTS (100M, or 18M with --tts-model english_18m_2026-10): real
    /// time on two CPU cores.
    Pocket,
    /// Kyutai's TTS 1.6B (kyutai/tts-1.6b-en_fr): needs a GPU for real time.
    Kyutai,
}

#[derive(Debug, Clone, Args)]
pub struct PersonasArgs {
    #[command(subcommand)]
    pub command: Option<PersonasCmd>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PersonasCmd {
    /// Validate one persona file; exits non-zero with the located error.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub command: Option<HistoryCmd>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HistoryCmd {
    /// Print one session as Markdown (ID from `assistant history`, or `last`).
    Show { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// The Moshi speech model (or the demo model when no weights are found).
    Moshi,
    /// Output = input delayed by one frame: measures the audio path.
    Loopback,
    /// Speech-to-text → an LLM → text-to-speech, with barge-in (Kyutai STT and TTS,
    /// any OpenAI-compatible server or a GGUF model in-process).
    Cascade,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Run without the TUI: text to stdout, progress and warnings to stderr.
    #[arg(long, global = true)]
    pub headless: bool,
    /// With --headless and --input, pace the file at real time.
    #[arg(long, global = true)]
    pub realtime: bool,
    /// Read the microphone from a WAV file (any rate, channels, bit depth).
    #[arg(long, global = true, value_name = "FILE.wav")]
    pub input: Option<PathBuf>,
    /// Write what the model says to a WAV file (24 kHz mono).
    #[arg(long, global = true, value_name = "FILE.wav")]
    pub output: Option<PathBuf>,
    /// Capture device, as `assistant devices` lists them: HOST:DEVICE on any host
    /// (for example pulseaudio:nullsink.monitor, alsa:default, or HOST:default), or
    /// a name (substring) or index on the default host.
    #[arg(long, global = true, value_name = "HOST:DEVICE|NAME|INDEX")]
    pub input_device: Option<String>,
    /// Playback device: HOST:DEVICE on any host (for example pulseaudio:nullsink),
    /// or a name (substring) or index on the default host.
    #[arg(long, global = true, value_name = "HOST:DEVICE|NAME|INDEX")]
    pub output_device: Option<String>,
    /// What sits between microphone and speaker.
    #[arg(long, global = true, value_enum, default_value_t = EngineKind::Moshi)]
    pub engine: EngineKind,
    /// Write one JSON object of run statistics here at the end.
    #[arg(long, global = true, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Log file (default: the XDG state directory). Filter with ASSISTANT_LOG or RUST_LOG.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Largest backlog of input, in frames, before the oldest frames are dropped.
    #[arg(long, global = true, default_value_t = 3, value_name = "FRAMES")]
    pub max_backlog: usize,
    /// The persona at start, by name (`assistant personas` lists them).
    #[arg(long, global = true, value_name = "NAME")]
    pub persona: Option<String>,
    /// Echo cancellation on the microphone (toggle live with `e`) [default: on; off with
    /// --engine loopback, which measures the raw audio path].
    #[arg(long, global = true, value_enum, value_name = "on|off")]
    pub aec: Option<OnOff>,
    /// Close the microphone while the assistant speaks (for rooms where cancellation is not enough).
    #[arg(long, global = true)]
    pub half_duplex: bool,
    /// Start with the microphone closed; Space opens and closes it.
    #[arg(long, global = true)]
    pub push_to_talk: bool,
    /// Send TEXT as a typed turn once the model is up (the cascade answers it as if you
    /// had said it), then run on as usual.
    #[arg(long = "say", value_name = "TEXT")]
    pub say: Option<String>,
    /// Hands-free: no model hears the microphone until you say the persona's name
    /// (takes from `assistant wake record NAME`); it listens for one exchange, then
    /// waits again. `w` toggles it in the TUI.
    #[arg(long, global = true)]
    pub wake: bool,
    /// With --wake: seconds of quiet on both sides that end the exchange.
    #[arg(long, global = true, default_value_t = 6.0, value_name = "SECONDS")]
    pub wake_quiet: f64,
    /// With --wake: the spotter's threshold, 0..1 (`assistant wake test` shows scores).
    #[arg(long, global = true, value_name = "SCORE")]
    pub wake_threshold: Option<f32>,
    /// With --wake: where the takes live (default: $XDG_CONFIG_HOME/assistant/wake).
    #[arg(long, global = true, value_name = "DIR")]
    pub wake_takes: Option<PathBuf>,
    /// Reopen the last session's transcript in the feed.
    #[arg(long, global = true)]
    pub resume: bool,
    /// Do not journal this session to the data directory.
    #[arg(long, global = true)]
    pub no_journal: bool,
    /// Unload the model after this many seconds of silence from both sides, and reload it
    /// when you speak again (off by default).
    #[arg(long, global = true, value_name = "SECS")]
    pub idle_unload: Option<f64>,
    /// Talk to a model on another machine: a server speaking Kyutai's protocol
    /// (`assistant serve`, moshi-backend, moshi-server), e.g. ws://192.168.1.20:8998.
    /// ASSISTANT_CONNECT configures one for every run without an engine flag.
    #[arg(long, global = true, env = "ASSISTANT_CONNECT", value_name = "URL")]
    pub connect: Option<String>,
    /// The access token: what `serve` requires of clients, and what `--connect` sends
    /// (as the kyutai-api-key header).
    #[arg(long, global = true, env = "ASSISTANT_TOKEN", value_name = "SECRET")]
    pub token: Option<String>,
    /// With --connect wss://: accept any certificate, such as the self-signed ones
    /// moshi-backend makes (the connection is encrypted, but to whoever answers).
    #[arg(long, global = true)]
    pub insecure: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub cascade: CascadeArgs,
    /// No engine flag (`--engine`, `--demo`, `--model-dir`, `--hf-repo`, `--connect`) was
    /// given: the app picks the engine for this machine. Set by [`parse`] only, so
    /// arguments built any other way keep the flags' engine.
    #[arg(skip)]
    pub auto_engine: bool,
    /// Wake mode is on because the settings file says so, not `--wake`: with no takes
    /// recorded it is a warning, not a refusal to start.
    #[arg(skip)]
    pub wake_saved: bool,
}

/// The arguments that name an engine (clap's ids).
const ENGINE_FLAGS: [&str; 4] = ["engine", "demo", "model_dir", "hf_repo"];

/// The process's command line, noting whether it names an engine. A server configured
/// in ASSISTANT_CONNECT gives way to an engine named on the command line.
pub fn parse() -> Cli {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let named = ENGINE_FLAGS.iter().any(|id| given(id));
    if named && matches.value_source("connect") == Some(ValueSource::EnvVariable) {
        cli.run.connect = None;
    }
    cli.run.auto_engine = !named && !given("connect");
    apply_saved(&mut cli.run, &given);
    cli
}

/// The settings file's choices (`s` in the TUI), where the command line made none.
fn apply_saved(run: &mut RunArgs, given: &dyn Fn(&str) -> bool) {
    let Some(path) = crate::settings::path() else {
        return;
    };
    let saved = match crate::settings::Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: settings not read: {e:#} (fix or delete the file)");
            return;
        }
    };
    if let Some(on) = saved.echo_cancel.filter(|_| !given("aec")) {
        run.aec = Some(if on { OnOff::On } else { OnOff::Off });
    }
    // Flags that only switch on: a flag given wins; otherwise the file says.
    if let Some(on) = saved.half_duplex.filter(|_| !given("half_duplex")) {
        run.half_duplex = on;
    }
    if let Some(on) = saved.push_to_talk.filter(|_| !given("push_to_talk")) {
        run.push_to_talk = on;
    }
    if let Some(on) = saved.wake.filter(|_| !given("wake")) {
        run.wake = on;
        run.wake_saved = on;
    }
    if saved.wake_threshold.is_some() && !given("wake_threshold") {
        run.wake_threshold = saved.wake_threshold.map(|t| t as f32);
    }
    let m = &mut run.model;
    if saved.temperature.is_some() && !given("temperature") {
        m.temperature = saved.temperature;
    }
    if saved.text_temperature.is_some() && !given("text_temperature") {
        m.text_temperature = saved.text_temperature;
    }
    if saved.top_k.is_some() && !given("top_k") {
        m.top_k = saved.top_k;
    }
    if run.auto_engine {
        if let Some(kind) = saved
            .engine
            .as_deref()
            .and_then(|e| EngineKind::from_str(e, true).ok())
        {
            run.engine = kind;
            run.auto_engine = false;
        }
    }
}

/// `--engine cascade`: where its three parts come from.
#[derive(Debug, Clone, Args)]
pub struct CascadeArgs {
    /// The recogniser when no --stt-model-dir: `whisper` (OpenAI's Whisper base.en,
    /// streaming: keeps up on two CPU cores) or `kyutai` (Kyutai STT 1B: lower latency,
    /// needs a GPU for real time).
    #[arg(long, global = true, value_enum, default_value_t = SttKind::Whisper)]
    pub stt: SttKind,
    /// Recogniser checkpoint directory, either kind (told apart by its config.json):
    /// Whisper in the Hugging Face layout, or the layout of kyutai/stt-1b-en_fr-candle.
    /// Default: the Hugging Face cache, then a download.
    #[arg(long, global = true, value_name = "DIR")]
    pub stt_model_dir: Option<PathBuf>,
    /// The synthesiser.
    #[arg(long, global = true, value_enum, default_value_t = TtsKind::Pocket)]
    pub tts: TtsKind,
    /// TTS checkpoint directory: for Pocket TTS, model.safetensors and the tokenizer
    /// (languages/<name>/ of kyutai/pocket-tts-without-voice-cloning, optionally with a
    /// config.yaml in the package's format); for --tts kyutai, the layout of
    /// kyutai/tts-1.6b-en_fr. Default: the Hugging Face cache, then a download.
    #[arg(long, global = true, value_name = "DIR")]
    pub tts_model_dir: Option<PathBuf>,
    /// The TTS voice, overriding the persona's `tts_voice`: for Pocket TTS a predefined
    /// voice (alba, marius, javert, jean, fantine, cosette, …) or a voice-state
    /// .safetensors file (as the package's export-voice writes); for --tts kyutai an
    /// embedding file or a name in the voices directory.
    #[arg(long, global = true, value_name = "FILE|NAME")]
    pub tts_voice: Option<String>,
    /// Pocket TTS model when no --tts-model-dir: `english` (100M) or
    /// `english_18m_2026-10` (18M).
    #[arg(long, global = true, default_value = "english", value_name = "NAME")]
    pub tts_model: String,
    /// Pocket TTS temperature (the flow's noise; 0 is deterministic) [default: the
    /// model's, 0.3].
    #[arg(long, global = true, value_name = "T")]
    pub tts_temperature: Option<f64>,
    /// Pocket TTS end-of-speech threshold on the EOS logit [default: the model's: -4,
    /// -1 for 18M].
    #[arg(
        long,
        global = true,
        value_name = "LOGIT",
        allow_negative_numbers = true
    )]
    pub tts_eos_threshold: Option<f64>,
    /// Pocket TTS flow decode steps per frame (LSD steps).
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    pub tts_decode_steps: usize,
    /// Pocket TTS with its flow LM's linear layers in q8_0.
    #[arg(long, global = true)]
    pub tts_q8: bool,
    /// Pocket TTS: words of an unfinished sentence to wait for before speaking up to a
    /// comma (0: whole sentences only).
    #[arg(long, global = true, default_value_t = crate::models::speech::tts::pocket::tts::EAGER_WORDS, value_name = "N")]
    pub tts_eager_words: usize,
    /// An OpenAI-compatible server (Ollama, llama.cpp, vLLM, …), e.g.
    /// http://127.0.0.1:11434/v1; without it the LLM runs in-process from a GGUF.
    #[arg(long, global = true, value_name = "URL")]
    pub llm_url: Option<String>,
    /// The model the server runs; overrides the persona's `llm_model`.
    #[arg(long, global = true, value_name = "NAME")]
    pub llm_model: Option<String>,
    /// The environment variable holding the server's API key (none is sent if unset).
    #[arg(
        long,
        global = true,
        default_value = "OPENAI_API_KEY",
        value_name = "VAR"
    )]
    pub llm_api_key_env: String,
    /// A GGUF chat model (Qwen2 or Llama) to run in-process; default: the Hugging Face
    /// cache, then a download of Qwen2.5-0.5B-Instruct q4.
    #[arg(long, global = true, value_name = "FILE.gguf")]
    pub llm_gguf: Option<PathBuf>,
    /// Tokens the server's model holds, prompt and reply: the history is bounded to fit
    /// (default 8192; the in-process GGUF uses its own context).
    #[arg(
        long,
        global = true,
        value_name = "TOKENS",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(256..)
    )]
    pub llm_context: Option<usize>,
    /// MCP servers to start with the session, in the `mcpServers` shape (default:
    /// $XDG_CONFIG_HOME/assistant/mcp.json when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub mcp_config: Option<PathBuf>,
    /// What tools may do: `read-only` offers only tools that change nothing; `ask`
    /// offers all, asking before anything destructive. Giving it turns tools on
    /// without an MCP configuration (the built-in actions).
    #[arg(long, global = true, value_name = "ACCESS")]
    pub tools_access: Option<crate::tools::config::Access>,
    /// The start persona's `tools = [...]` (filled in from the persona, not a flag).
    #[arg(skip)]
    pub persona_tools: Option<Vec<String>>,
}

impl CascadeArgs {
    /// The cascade's plain options: these flags over the model flags (device, demo,
    /// seed, the persona's prompt and temperature as `start_persona` filled them).
    pub fn options(&self, model: &ModelArgs) -> crate::engine::cascade::load::CascadeOptions {
        use crate::engine::cascade::TurnSettings;
        use crate::models::llm::LlmChoice;
        use crate::models::llm::{GgufLlmOptions, OpenAiOptions};
        use crate::models::speech::files::{SttOptions, TtsOptions};
        let m = model.options();
        let llm = match &self.llm_url {
            Some(url) => {
                let mut o = OpenAiOptions::new(url, self.llm_model.clone().unwrap_or_default());
                o.api_key_env = self.llm_api_key_env.clone();
                if let Some(n) = self.llm_context {
                    o.context = n;
                }
                LlmChoice::Server(o)
            }
            None => LlmChoice::Gguf(GgufLlmOptions {
                gguf: self.llm_gguf.clone(),
                seed: m.sampling.seed,
                ..Default::default()
            }),
        };
        let mut settings = TurnSettings {
            temperature: m.sampling.text_temperature as f32,
            llm_model: self.llm_model.clone(),
            ..Default::default()
        };
        if !m.prompt.text.trim().is_empty() {
            settings.system_prompt = m.prompt.text.clone();
        }
        crate::engine::cascade::load::CascadeOptions {
            pocket: (self.tts == TtsKind::Pocket).then(|| self.pocket_options(m.sampling.seed)),
            demo: model.demo,
            device: model.device,
            stt: SttOptions {
                model_dir: self.stt_model_dir.clone(),
                hf_repo: self.stt_repo().into(),
            },
            tts: TtsOptions {
                model_dir: self.tts_model_dir.clone(),
                voice: self.tts_voice.clone(),
                ..Default::default()
            },
            llm,
            settings,
            tools: Default::default(),
        }
    }

    /// The recogniser's Hugging Face repository (`--stt`).
    pub fn stt_repo(&self) -> &'static str {
        use crate::models::speech::files::{STT_REPO, WHISPER_REPO};
        match self.stt {
            SttKind::Whisper => WHISPER_REPO,
            SttKind::Kyutai => STT_REPO,
        }
    }

    /// Pocket TTS's options from these flags.
    pub fn pocket_options(&self, seed: u64) -> crate::models::speech::tts::pocket::PocketOptions {
        use crate::models::speech::tts::pocket::{PocketOptions, PocketSampling};
        PocketOptions {
            model_dir: self.tts_model_dir.clone(),
            model: self.tts_model.clone(),
            voice: self.tts_voice.clone(),
            sampling: PocketSampling {
                temperature: self.tts_temperature,
                decode_steps: self.tts_decode_steps,
                eos_threshold: self.tts_eos_threshold,
                seed,
                ..Default::default()
            },
            q8: self.tts_q8,
            eager_words: self.tts_eager_words,
            ..Default::default()
        }
    }

    /// These flags as a command line (for a child run of this binary).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let mut put = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(flag.to_string());
                a.push(v);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let stt = match self.stt {
            SttKind::Whisper => "whisper",
            SttKind::Kyutai => "kyutai",
        };
        put("--stt", Some(stt.into()));
        put("--stt-model-dir", path(&self.stt_model_dir));
        let tts = match self.tts {
            TtsKind::Pocket => "pocket",
            TtsKind::Kyutai => "kyutai",
        };
        put("--tts", Some(tts.into()));
        put("--tts-model-dir", path(&self.tts_model_dir));
        put("--tts-voice", self.tts_voice.clone());
        put("--tts-model", Some(self.tts_model.clone()));
        put(
            "--tts-temperature",
            self.tts_temperature.map(|t| t.to_string()),
        );
        put(
            "--tts-eos-threshold",
            self.tts_eos_threshold.map(|t| t.to_string()),
        );
        put(
            "--tts-decode-steps",
            Some(self.tts_decode_steps.to_string()),
        );
        put("--tts-eager-words", Some(self.tts_eager_words.to_string()));
        put("--llm-url", self.llm_url.clone());
        put("--llm-model", self.llm_model.clone());
        put("--llm-api-key-env", Some(self.llm_api_key_env.clone()));
        put("--llm-gguf", path(&self.llm_gguf));
        put("--llm-context", self.llm_context.map(|n| n.to_string()));
        put("--mcp-config", path(&self.mcp_config));
        put(
            "--tools-access",
            self.tools_access.map(|a| match a {
                crate::tools::config::Access::ReadOnly => "read-only".to_string(),
                crate::tools::config::Access::Ask => "ask".to_string(),
            }),
        );
        if self.tts_q8 {
            a.push("--tts-q8".into());
        }
        a
    }
}

/// `assistant serve`: the engine (`--engine`, `--demo`, `--model-dir`, sampling flags)
/// for remote clients, one engine state per session.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but a loopback address needs --token or --no-auth.
    #[arg(long, default_value = "127.0.0.1:8998", value_name = "ADDR:PORT")]
    pub bind: std::net::SocketAddr,
    /// Serve a non-local address without a token (anyone who reaches it can use it).
    #[arg(long)]
    pub no_auth: bool,
    /// Sessions at once; a client beyond that waits in the queue (--queue) or gets a
    /// "busy" error and is closed.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_sessions: usize,
    /// Clients that may wait for a free session when all are in use (0: none wait).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub queue: usize,
    /// How long a queued client waits before it gets the "busy" error.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub queue_wait: f64,
    /// Serve wss:// (TLS) with this PEM certificate chain; needs --key.
    #[arg(long, value_name = "FILE.pem", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE.pem", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Close a session whose client has sent nothing (no audio, no pong to the
    /// server's pings every second) or taken nothing for this long: it stopped reading
    /// or its link died. Short, so its reconnection (within ~20 s) finds the slot free.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub idle_timeout: f64,
    /// On SIGTERM or Ctrl-C: how long running sessions may go on before they are
    /// closed (with a reason the client shows); no new ones are accepted meanwhile.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub drain_timeout: f64,
    /// Step the sessions' LM together, in one batched forward pass of --max-sessions
    /// slots (one copy of the weights): Moshi checkpoints and --demo, not PersonaPlex.
    /// A session whose audio is late is left out of a step, never waited for.
    #[arg(long, conflicts_with = "load_per_session")]
    pub batch: bool,
    /// Load the model for each session instead of once (the old way; for `bench serve`).
    #[arg(long, hide = true)]
    pub load_per_session: bool,
    /// Largest message a client may send, in bytes.
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub max_message: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The cancelled microphone goes to the global `--output OUT.wav` (24 kHz mono, 32-bit float).
#[derive(Debug, Clone, Args)]
pub struct AecArgs {
    /// What the loudspeaker played (any rate and channel count).
    #[arg(long, value_name = "FAR.wav")]
    pub far: PathBuf,
    /// What the microphone heard (any rate and channel count).
    #[arg(long, value_name = "MIC.wav")]
    pub mic: PathBuf,
    /// Samples per block fed to the canceller (the engine uses 1920, 80 ms).
    #[arg(long, default_value_t = 1920)]
    pub block: usize,
    /// Echo tail the linear filter covers, in ms (default 72).
    #[arg(long, value_name = "MS")]
    pub filter_ms: Option<f32>,
}

impl AecArgs {
    /// The plain options the canceller's offline run takes.
    pub fn run(&self) -> crate::audio::aec::AecRun {
        crate::audio::aec::AecRun {
            far: self.far.clone(),
            mic: self.mic.clone(),
            block: self.block,
            filter_ms: self.filter_ms,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Use the built-in demo model even when weights are present.
    #[arg(long, global = true)]
    pub demo: bool,
    /// A checkpoint directory in the official layout.
    #[arg(long, global = true, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Hugging Face repo to look for in the cache, or download.
    #[arg(long, global = true, default_value = crate::bus::MOSHIKO)]
    pub hf_repo: String,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, global = true, default_value = "auto", value_parser = device_choice)]
    pub device: DeviceChoice,
    /// Audio temperature; 0 is greedy.
    #[arg(long, global = true)]
    pub temperature: Option<f64>,
    /// Text temperature; 0 is greedy.
    #[arg(long, global = true)]
    pub text_temperature: Option<f64>,
    #[arg(long, global = true)]
    pub top_k: Option<usize>,
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Write one JSON line per model step: step, text_token, audio_codes; a PersonaPlex
    /// prefill's steps too, marked "prefill" with their phase.
    #[arg(long, global = true, value_name = "PATH")]
    pub dump_tokens: Option<PathBuf>,
    /// LM context in 80 ms steps (the KV cache size); default: the checkpoint's, cut to
    /// what fits the device's free memory.
    #[arg(long, global = true, value_name = "STEPS")]
    pub context: Option<usize>,
    /// Most memory the model may take on its device, in GiB (default: all that is free).
    /// For sharing a GPU: the plan moves layers to the host or shortens the context.
    #[arg(long, global = true, value_name = "GIB", value_parser = positive_gib)]
    pub max_memory: Option<f64>,
    /// PersonaPlex: the role text the model is primed with (wrapped in <system> tags);
    /// overrides the persona's `prompt`. Models that take no prompt ignore it.
    #[arg(long, global = true, value_name = "TEXT")]
    pub text_prompt: Option<String>,
    /// PersonaPlex: the voice to speak in: a voice name (NATF2) from --voices-dir, one of
    /// NVIDIA's .pt voice files, or a WAV (a few seconds of one speaker); overrides the
    /// persona's `voice_prompt`.
    #[arg(long, global = true, value_name = "WAV|PT|NAME")]
    pub voice_prompt: Option<PathBuf>,
    /// PersonaPlex: where voice names are looked up (NVIDIA's voices.tgz unpacked);
    /// default: the model directory's `voices/`.
    #[arg(long, global = true, value_name = "DIR", env = "ASSISTANT_VOICES_DIR")]
    pub voices_dir: Option<PathBuf>,
}

impl ModelArgs {
    /// The engine's plain options: the flags, with sampling over its defaults.
    pub fn options(&self) -> ModelOptions {
        let d = Sampling::default();
        ModelOptions {
            demo: self.demo,
            model_dir: self.model_dir.clone(),
            hf_repo: self.hf_repo.clone(),
            device: self.device,
            sampling: Sampling {
                temperature: self.temperature.unwrap_or(d.temperature),
                text_temperature: self.text_temperature.unwrap_or(d.text_temperature),
                top_k: self.top_k.unwrap_or(d.top_k),
                seed: self.seed.unwrap_or(d.seed),
            },
            context: self.context,
            max_memory_gib: self.max_memory,
            prompt: crate::models::duplex::Prompt {
                text: self.text_prompt.clone().unwrap_or_default(),
                voice: self.voice_prompt.clone(),
                ..Default::default()
            },
            voices_dir: self.voices_dir.clone(),
            sessions: 1,
            batch: false,
        }
    }
}

impl From<&ModelArgs> for ModelOptions {
    fn from(args: &ModelArgs) -> Self {
        args.options()
    }
}

/// `--device`: checked when the command line is read.
fn device_choice(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
        .map_err(|e: crate::models::moshi::ModelLoadError| format!("{} ({})", e.message, e.remedy))
}

#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// The checkpoint directory: nvidia/personaplex-7b-v1's files, or a Kyutai STT
    /// (kyutai/stt-1b-en_fr-candle's files).
    pub src: PathBuf,
    /// Where to write (a new or empty directory).
    pub dst: PathBuf,
    /// Write the LM as q8 GGUF.
    #[arg(long, required_unless_present = "q4", conflicts_with = "q4")]
    pub q8: bool,
    /// Write the LM as q4 GGUF (Kyutai STT checkpoints only).
    #[arg(long)]
    pub q4: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportDemoArgs {
    pub dir: PathBuf,
    /// Write the LM as q8 GGUF (model.q8.gguf) instead of safetensors.
    #[arg(long)]
    pub q8: bool,
    /// Write the LM safetensors as bf16 instead of f32.
    #[arg(long)]
    pub bf16: bool,
}

impl ExportDemoArgs {
    /// The LM format asked for; both flags at once is a mistake.
    pub fn format(&self) -> Result<crate::models::moshi::LmFormat, String> {
        use crate::models::moshi::LmFormat;
        match (self.q8, self.bf16) {
            (true, true) => {
                Err("--q8 and --bf16 exclude each other: q8 GGUF or bf16 safetensors".into())
            }
            (true, false) => Ok(LmFormat::Q8),
            (false, true) => Ok(LmFormat::Bf16),
            (false, false) => Ok(LmFormat::F32),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(value_enum, default_value_t = BenchWhat::Audio)]
    pub what: BenchWhat,
    /// `bench pocket`: the configuration, `default` (100M English) or `18m`.
    #[arg(long, default_value = "default", value_name = "default|18m")]
    pub config: String,
    /// `bench pocket`: seconds of audio to synthesise.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub seconds: f64,
    /// `bench pocket`: CPU threads (candle's; 0 leaves the default).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub threads: usize,
    /// `bench cascade`: the CPU cascade at the published shapes with random weights
    /// (Whisper base, or --stt-model-dir; Pocket TTS --config; Qwen2.5-0.5B Q4_K_M),
    /// a scripted conversation through the whole engine at real time.
    #[arg(long)]
    pub published: bool,
    /// `bench cascade --published`: minutes of conversation.
    #[arg(long, default_value_t = 10.0, value_name = "MIN")]
    pub minutes: f64,
    /// `bench cascade --published`: every part in one thread pool at one priority
    /// (to compare with the default, where the recogniser and the LLM yield to the
    /// engine thread).
    #[arg(long)]
    pub shared_threads: bool,
    /// `bench echo`: which random rooms, the tuning seeds, the held-out ones, or all.
    #[arg(long, default_value = "all", value_name = "tune|held-out|all")]
    pub rooms: String,
    /// `bench echo`: the WebRTC AEC3 reference binary (tools/aec_reference/build_webrtc.sh;
    /// default target/aec_reference/webrtc_aec3 when it is there).
    #[arg(long, value_name = "PATH")]
    pub webrtc: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWhat {
    /// Callback cost, engine overhead, loopback file throughput.
    Audio,
    /// Mimi encode, LM step, Mimi decode per step.
    Model,
    /// Render time per frame and idle UI CPU.
    Ui,
    /// The one-shot GPU check's measurements (scripts/gpu-check runs it section by section).
    Gpu,
    /// The cascade's end-of-speech → first-audio and barge-in latencies, through the
    /// engine at real time (takes the cascade's flags, e.g. --demo or --llm-url).
    Cascade,
    /// Opus cost per frame, the latency the network path adds, server CPU per session.
    Net,
    /// `serve`: connect time and memory with N sessions, one shared load against a load
    /// per session (demo and ~300M shapes), then `serve-batch`'s figures.
    Serve,
    /// `serve --batch`: LM CPU and wall time per frame for N = 1..8 sessions, batched
    /// against unbatched, with the teacher-forced token-equality check (demo, ~300M).
    ServeBatch,
    /// Pocket TTS at a published size with random weights: real-time factor and time to
    /// first audio, f32 and q8 (--config default|18m, --seconds, --threads).
    Pocket,
    /// The echo canceller against WebRTC AEC3 on random hard rooms: ERLE, near-end
    /// preservation and double talk per room and their distribution, and CPU per frame
    /// (--rooms tune|held-out|all, --webrtc PATH).
    Echo,
}

/// `bench gpu`: which section of the GPU check, at which shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    Write,
    Free,
    /// The small model, q8, loaded and stepped on the device twice: the first time the
    /// driver compiles candle's PTX kernels for the card, later sections find them cached.
    Warmup,
    Q8,
    Bf16,
    Placed,
    Fallback,
    /// PersonaPlex at the size's shape with 16 depformer slices (random weights, built on
    /// the device): the prompt prefill's steps per second, WAV codes and a replayed `.pt`
    /// voice, and the conversation step.
    Personaplex,
    /// Real-time sessions one device holds (`serve --batch`): the q8 checkpoint's LM
    /// (KV cache cut to 60 s) stepping N = 1, 2, 4, ... sessions each on its own fork
    /// and in one batch, until both pass 80 ms a frame.
    Batch,
    /// All of the above, in that order, in this process.
    All,
    /// Not a measurement: the line of figures of a `--headless` run's `--stats-json`
    /// (given as `--stats`), checked.
    Headless,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Size {
    /// moshiko: the 7B LM and the published Mimi.
    Full,
    /// An 8-layer LM of d_model 256 and the demo Mimi: the CPU dry run.
    Small,
}

#[derive(Debug, Clone, Args)]
pub struct GpuArgs {
    /// bench gpu: which part of the check to run.
    #[arg(long, value_enum, default_value_t = Section::All)]
    pub section: Section,
    /// bench gpu: the model shape.
    #[arg(long, value_enum, default_value_t = Size::Full)]
    pub size: Size,
    /// bench gpu: where the synthetic checkpoints are written and read [default: a folder in the temporary directory].
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// bench gpu: append one JSON line per measurement to this file.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// bench gpu: timed steps per measurement (after 3 untimed ones).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// bench gpu --section headless: the stats JSON of a `--headless` run.
    #[arg(long, value_name = "PATH")]
    pub stats: Option<PathBuf>,
}

/// `--max-memory`: a positive, finite number of GiB.
fn positive_gib(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a positive number of GiB (for example 7.5)"
        )),
    }
}
