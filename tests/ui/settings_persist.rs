//! Settings across a restart, through the binary in tmux: `s` changes push-to-talk,
//! the wake threshold and top-k, they are saved to `$XDG_CONFIG_HOME/assistant/config.toml`, and the next
//! start runs with them, except where a flag says otherwise (`--top-k 40` wins over
//! the saved 260 for that run, and leaves the file as it was).

use crate::tmux_support;
use tmux_support::{Tmux, WAV};

fn saved(config: &std::path::Path) -> toml::Table {
    let text =
        std::fs::read_to_string(config.join("assistant/config.toml")).expect("settings saved");
    text.parse().expect("TOML")
}

#[test]
fn saved_settings_apply_at_the_next_start_and_flags_override_them() {
    let args = ["--engine", "loopback", "--input", WAV];
    let Some(first) = Tmux::start(&args) else {
        return;
    };
    first.wait_for("ready", |s| s.contains("model ready: loopback"));
    first.keys("s");
    first.wait_for("the settings", |s| {
        s.contains("push-to-talk") && s.contains("top-k")
    });
    for k in [
        "Down", "Down", "Enter", "Down", "Down", "Right", "Down", "Down", "Down", "Right",
    ] {
        first.keys(k);
    }
    let s = first.wait_for("the changes", |s| {
        s.contains("push-to-talk       on")
            && s.contains("wake threshold     0.78")
            && s.contains("top-k              260")
    });
    assert!(
        s.contains("muted"),
        "push-to-talk closes the microphone at once:\n{s}"
    );
    // Esc, then q once the overlay is gone (together they would read as Alt-q).
    first.keys("Escape");
    first.wait_for("the overlay closed", |s| !s.contains("┌ settings"));
    first.keys("q");
    let config = first.path("config");
    let file = saved(&config);
    assert_eq!(file.get("push_to_talk"), Some(&toml::Value::Boolean(true)));
    assert_eq!(file.get("top_k"), Some(&toml::Value::Integer(260)));
    let threshold = file.get("wake_threshold").and_then(|v| v.as_float());
    assert!(
        threshold.is_some_and(|t| (t - 0.78).abs() < 1e-6),
        "{file:?}"
    );
    assert_eq!(file.len(), 3, "only what was changed is saved: {file:?}");

    let env = [("XDG_CONFIG_HOME", config.display().to_string())];
    let mut again: Vec<&str> = args.to_vec();
    again.extend(["--top-k", "40"]);
    let Some(second) = Tmux::start_env(&env, &again) else {
        return;
    };
    second.wait_for("ready", |s| s.contains("model ready: loopback"));
    second.keys("s");
    let s = second.wait_for("the settings", |s| s.contains("top-k"));
    assert!(
        s.contains("push-to-talk       on"),
        "saved push-to-talk applies:\n{s}"
    );
    assert!(s.contains("top-k              40 "), "the flag wins:\n{s}");
    assert!(
        s.contains("wake threshold     0.78"),
        "the saved threshold applies:\n{s}"
    );
    assert!(s.contains("muted"), "the microphone starts closed:\n{s}");
    second.keys("Escape");
    second.wait_for("the overlay closed", |s| !s.contains("┌ settings"));
    second.keys("q");
    second.wait_for("the end", |_| second.exit_code().is_some());
    assert_eq!(
        saved(&config).get("top_k"),
        Some(&toml::Value::Integer(260))
    );
}
