//! Prints the canceller's cost, as `assistant bench` will once wired: ms CPU per s of audio.
fn main() {
    assistant::audio::aec::bench_aec();
}
