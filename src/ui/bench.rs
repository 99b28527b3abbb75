//! `assistant bench ui`: filled in below.
pub fn bench_ui() -> anyhow::Result<()> {
    Ok(())
}
