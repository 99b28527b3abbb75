//! The session journal survives a SIGKILL: every line but possibly the last
//! parses, and it holds everything said up to the last second before the kill.

use crate::common;
use assistant::session::{read_session, Record};
use std::io::Read;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn a_killed_headless_run_leaves_a_readable_journal_with_the_text_so_far() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = common::assistant(tmp.path())
        .args(["--headless", "--demo", "--realtime", "--input"])
        .arg(common::shared_audio("count_16k_mono.wav"))
        .arg("--output")
        .arg(tmp.path().join("out.wav"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Collect stdout with arrival times, as the user sees it.
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let seen2 = seen.clone();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen2.lock().unwrap().push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    });
    std::thread::sleep(Duration::from_millis(3500));
    child.kill().unwrap(); // SIGKILL: no handlers, no flushing
    let killed = Instant::now();
    child.wait().unwrap();
    reader.join().unwrap();

    let dir = tmp.path().join("data/assistant/sessions");
    let journals: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let raw = std::fs::read_to_string(&journals[0]).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    for (i, line) in lines.iter().enumerate().take(lines.len().saturating_sub(1)) {
        assert!(
            serde_json::from_str::<Record>(line).is_ok(),
            "line {i} does not parse: {line}"
        );
    }
    let (records, damaged) = read_session(&journals[0]).unwrap();
    assert!(damaged <= 1);
    assert!(matches!(records.first(), Some(Record::Start { .. })));
    assert!(
        !records.iter().any(|r| matches!(r, Record::End { .. })),
        "a killed run writes no end record"
    );
    let journal_text: String = records
        .iter()
        .filter_map(|r| {
            if let Record::Text { text, .. } = r {
                Some(text.as_str())
            } else {
                None
            }
        })
        .collect();
    let before: String = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t + Duration::from_secs(1) <= killed)
        .map(|(_, s)| s.as_str())
        .collect();
    assert!(
        before.len() > 20,
        "the demo spoke before the kill: {before:?}"
    );
    assert!(journal_text.starts_with(&before), "the journal holds everything shown up to a second before the kill\njournal: {journal_text:?}\nshown: {before:?}");
    // No half-written output WAV is left behind by the kill either.
    assert!(!tmp.path().join("out.wav").exists());
}
