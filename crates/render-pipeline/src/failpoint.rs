//! Crash points for tests: `RENDER_FAILPOINT=<name>` makes the process die at that point, the way
//! a power cut would, so tests can prove a rerun recovers. Unset in production: a no-op.

/// Dies on the spot (no destructors, no flushing) when `RENDER_FAILPOINT` names this point.
pub fn hit(name: &str) {
    if std::env::var("RENDER_FAILPOINT").is_ok_and(|v| v.split(',').any(|p| p == name)) {
        eprintln!("render: failpoint {name} hit, aborting");
        std::process::abort();
    }
}
