//! Log lines a client can cause by the thousand — a panic contained, a pool worker replaced —
//! limited per call site and thread: at most [`BURST`] a second, then the count of those left
//! out, said with the next line the site logs (a soak trial: one client made 10 000 panics a
//! second, two lines each).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Lines a site logs per second per thread before it leaves them out.
pub(crate) const BURST: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

/// One call site's count on one thread (see [`log_limited`]).
#[derive(Debug)]
pub(crate) struct Limiter {
    window_start: Cell<Option<Instant>>,
    in_window: Cell<u32>,
    left_out: Cell<u64>,
}

impl Limiter {
    pub(crate) const fn new() -> Self {
        Limiter { window_start: Cell::new(None), in_window: Cell::new(0), left_out: Cell::new(0) }
    }

    /// Whether a line at `now` is logged: `Some(n)` with the lines left out before it (to say
    /// so first), `None` to leave it out.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        match self.window_start.get() {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {
                if self.in_window.get() < BURST {
                    self.in_window.set(self.in_window.get() + 1);
                    Some(0)
                } else {
                    self.left_out.set(self.left_out.get() + 1);
                    None
                }
            }
            _ => {
                self.window_start.set(Some(now));
                self.in_window.set(1);
                Some(self.left_out.replace(0))
            }
        }
    }
}

/// `log::log!` at `level` (a `log::Level` variant) and `target`, limited per call site and
/// thread (see the module docs).
macro_rules! log_limited {
    ($level:ident, target: $target:expr, $($arg:tt)+) => {{
        thread_local! {
            static LIMIT: $crate::log_limit::Limiter = const { $crate::log_limit::Limiter::new() };
        }
        if log::log_enabled!(target: $target, log::Level::$level)
            && let Some(left_out) = LIMIT.with(|l| l.admit(std::time::Instant::now()))
        {
            if left_out > 0 {
                log::log!(target: $target, log::Level::$level, "({left_out} lines like the next were left out)");
            }
            log::log!(target: $target, log::Level::$level, $($arg)+);
        }
    }};
}
pub(crate) use log_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_a_second_then_the_count_left_out_with_the_next_line() {
        let l = Limiter::new();
        let t0 = Instant::now();
        for i in 0..BURST {
            assert_eq!(l.admit(t0 + Duration::from_millis(u64::from(i))), Some(0), "line {i}");
        }
        for i in 0..5 {
            assert_eq!(l.admit(t0 + Duration::from_millis(500 + i)), None);
        }
        assert_eq!(l.admit(t0 + WINDOW), Some(5), "the next window says how many were left out");
        assert_eq!(l.admit(t0 + WINDOW + Duration::from_millis(1)), Some(0));
        assert_eq!(l.admit(t0 + WINDOW * 3), Some(0), "nothing left out since");
    }
}
