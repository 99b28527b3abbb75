//! Snapshots of the device picker (`d`) at 80x24 and 200x60: inputs and outputs of
//! two hosts, the devices in use marked, the cursor on another one, the inputs'
//! levels. Stored in the top-level `snapshots/`.

use crate::ui_support;

use assistant::bus::{DeviceEntry, DeviceSide, Endpoint};
use assistant::ui::AppEvent;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ui_support::*;

fn entry(side: DeviceSide, host: &str, id: &str, name: &str, config: &str) -> DeviceEntry {
    DeviceEntry {
        side,
        host: host.into(),
        selector: format!("{}:{id}", host.to_lowercase()),
        name: name.into(),
        config: config.into(),
    }
}

#[test]
fn snapshot_device_picker() {
    use DeviceSide::*;
    let mut s = listening(false);
    s.endpoints(
        Endpoint::Device("Monitor of Null Output".into()),
        Endpoint::Device("Null Output".into()),
    );
    s.talk(10, 0.05, 0.0, &[]);
    s.app(AppEvent::Key(KeyEvent::new(
        KeyCode::Char('d'),
        KeyModifiers::NONE,
    )));
    s.app(AppEvent::Devices(vec![
        entry(
            Microphone,
            "PulseAudio",
            "nullsink.monitor",
            "Monitor of Null Output",
            "44100 Hz, 2 ch, i16",
        ),
        entry(
            Microphone,
            "PulseAudio",
            "usb.mic",
            "USB Headset Microphone",
            "48000 Hz, 1 ch, i16",
        ),
        entry(
            Microphone,
            "ALSA",
            "default",
            "Playback/recording through the PulseAudio sound server",
            "48000 Hz, 2 ch, f32",
        ),
        entry(
            Speaker,
            "PulseAudio",
            "nullsink",
            "Null Output",
            "44100 Hz, 2 ch, i16",
        ),
        entry(
            Speaker,
            "PulseAudio",
            "usb",
            "USB Headset",
            "48000 Hz, 2 ch, i16",
        ),
        entry(
            Speaker,
            "ALSA",
            "hw:CARD=PCH,DEV=0",
            "HDA Intel PCH, ALC257 Analog",
            "no default config (busy)",
        ),
    ]));
    // The USB microphone hears the user; ALSA's default could not be opened beside.
    s.app(AppEvent::ProbeLevels(vec![(1, 0.4)]));
    s.app(AppEvent::Key(KeyEvent::new(
        KeyCode::Down,
        KeyModifiers::NONE,
    )));
    for (w, h) in [(80, 24), (200, 60)] {
        let t = draw(&mut s.state, w, h);
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("device_picker_{w}x{h}"), t.backend());
        });
    }
}
