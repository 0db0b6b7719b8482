//! The binary's panic hook: a panic (caught by the hub and answered 500, or
//! rolled back by the writer) is logged as one line, at most once per
//! [`PANIC_LOG_INTERVAL`] with the count of those not logged, instead of a
//! message and a backtrace on standard error for every request.
//!
//! A panic hook is process-wide, so only `main` installs it; the library
//! (and the tests, which run many hubs in one process) keep Rust's default.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one panic is logged per interval.
pub const PANIC_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub fn install() {
    let last: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    std::panic::set_hook(Box::new(move |info| {
        let mut last = match last.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        let due = last.0.is_none_or(|at| at.elapsed() >= PANIC_LOG_INTERVAL);
        if !due {
            last.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut last.1);
        last.0 = Some(Instant::now());
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%message, %location, suppressed, "a task panicked (caught; see the request's 500)");
    }));
}
