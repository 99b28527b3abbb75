//! `wss://`: our client against our server serving TLS (`serve --cert/--key`) on
//! 127.0.0.1 with a self-signed certificate made here. Without `--insecure` the client
//! refuses it and says why and what to do; with it, the session works and the user is
//! warned. Bad certificate files stop `serve` with the file named.

use assistant::cli::Cli;
use assistant::net::client::{connect, ConnectError, ConnectOptions};
use assistant::net::server::{ServeOptions, Server};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_assistant");

/// A self-signed certificate for localhost and 127.0.0.1, as PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

fn tls_server(cert: &Path, key: &Path) -> Server {
    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    let opts = ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        tls: Some(assistant::net::tls::server_config(cert, key).expect("TLS config")),
        ..ServeOptions::default()
    };
    Server::start(opts, assistant::app::serve::factory(&cli.run)).expect("server starts")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

#[test]
fn self_signed_server_is_refused_without_insecure_and_works_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let srv = tls_server(&cert, &key);
    let url = format!("wss://127.0.0.1:{}", srv.local_addr().port());

    // Checked: refused, naming the cause and the flag that accepts it.
    let e = connect(&ConnectOptions::new(&url)).err().expect("refused");
    let ConnectError::Tls { why, .. } = &e else {
        panic!("expected a TLS error, got {e}");
    };
    assert!(why.contains("not signed by a known authority"), "{e}");
    assert!(why.contains("--insecure"), "{e}");

    // The binary: exit code 2 and the same sentence.
    let o = Command::new(BIN)
        .args(["--connect", &url, "--headless", "--no-journal", "--input"])
        .arg(fixture("hello_24k_mono.wav"))
        .arg("--log-file")
        .arg(dir.path().join("c.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("TLS failed: the server's certificate is not signed"),
        "{err}"
    );

    // --insecure: the session runs over TLS, the input comes back, with a warning.
    let out = dir.path().join("out.wav");
    let o = Command::new(BIN)
        .args([
            "--connect",
            &url,
            "--insecure",
            "--headless",
            "--no-journal",
        ])
        .arg("--input")
        .arg(fixture("hello_24k_mono.wav"))
        .arg("--output")
        .arg(&out)
        .arg("--log-file")
        .arg(dir.path().join("c2.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("--insecure: the certificate of wss://127.0.0.1"),
        "{err}"
    );
    let got = assistant::audio::wav::read_wav(&out).unwrap().samples;
    let want = assistant::audio::wav::read_wav(&fixture("hello_24k_mono.wav"))
        .unwrap()
        .samples;
    let energy = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
    assert!(got.len() >= want.len(), "{} < {}", got.len(), want.len());
    assert!(
        energy(&got) > 0.25 * energy(&want),
        "the input did not come back over TLS"
    );
    assert_eq!(
        srv.stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn plain_ws_to_a_tls_server_and_wss_to_a_plain_one_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let srv = tls_server(&cert, &key);
    let e = connect(&ConnectOptions::new(format!("ws://{}", srv.local_addr())))
        .err()
        .expect("a TLS server does not speak plain WebSocket")
        .to_string();
    assert!(e.contains(&srv.local_addr().to_string()), "{e}");
    assert!(e.contains("connect with wss://"), "{e}");

    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    let plain = Server::start(
        ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..ServeOptions::default()
        },
        assistant::app::serve::factory(&cli.run),
    )
    .unwrap();
    let opts = ConnectOptions {
        insecure: true,
        ..ConnectOptions::new(format!("wss://{}", plain.local_addr()))
    };
    let e = connect(&opts).err().expect("no TLS there").to_string();
    assert!(e.contains("TLS failed") && e.contains("ws://"), "{e}");
}

#[test]
fn serve_names_a_missing_or_mismatched_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = self_signed(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_c2, key2) = self_signed(&other);
    let serve = |cert: &Path, key: &Path| {
        Command::new(BIN)
            .args(["serve", "--engine", "loopback", "--bind", "127.0.0.1:0"])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--log-file")
            .arg(dir.path().join("s.log"))
            .output()
            .unwrap()
    };
    let o = serve(&dir.path().join("nope.pem"), &key2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--cert") && err.contains("nope.pem"), "{err}");
    let o = serve(&cert, &key2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is the key the certificate's?"), "{err}");
}
