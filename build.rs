//! Builds the C shim that gives alsa-lib a real variadic error handler
//! (src/audio/alsa_quiet.c): stable Rust cannot define a variadic function.

fn main() {
    println!("cargo:rerun-if-changed=src/audio/alsa_quiet.c");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        cc::Build::new()
            .file("src/audio/alsa_quiet.c")
            .warnings(true)
            .compile("assistant_alsa_quiet");
        println!("cargo:rustc-link-lib=asound");
    }
}
