//! Kernel timestamps are `CLOCK_BOOTTIME`; events carry wall-clock time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Converts `CLOCK_BOOTTIME` nanoseconds to wall-clock time, with the offset between
/// the two clocks taken once at start (a later wall-clock step is not followed, so
/// event times stay monotonic within a run).
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    realtime_minus_boottime_ns: i128,
}

impl BootClock {
    pub fn new() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        BootClock { realtime_minus_boottime_ns: real - boot }
    }

    pub fn now_boot_ns() -> u64 {
        clock_ns(libc::CLOCK_BOOTTIME) as u64
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = boot_ns as i128 + self.realtime_minus_boottime_ns;
        UNIX_EPOCH + Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64)
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-24T03:04:05.123456789Z`.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339_nanos(self.wall(boot_ns))
    }
}

thread_local! {
    /// The last second formatted, and its text up to the fraction
    /// (`2026-11-24T03:04:05`): events come many to a second.
    static LAST_SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// What `humantime::format_rfc3339_nanos` writes, with the date and time of day
/// formatted once per second (they were a tenth of the daemon's time per event).
fn rfc3339_nanos(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (seconds, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
    LAST_SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != seconds {
            *prefix = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string();
            prefix.pop(); // the 'Z'
            *second = seconds;
        }
        let mut text = String::with_capacity(prefix.len() + 11);
        text.push_str(prefix);
        text.push('.');
        let mut digits = [b'0'; 9];
        let mut rest = nanos;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        text.extend(digits.iter().map(|&d| d as char));
        text.push('Z');
        text
    })
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_now_maps_to_wall_time_now() {
        let clock = BootClock::new();
        let wall = clock.wall(BootClock::now_boot_ns());
        let drift = SystemTime::now().duration_since(wall).unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_secs(1), "drift {drift:?}");
        let text = clock.rfc3339(BootClock::now_boot_ns());
        assert!(text.ends_with('Z') && text.len() == "2026-11-24T03:04:05.123456789Z".len(), "{text}");
    }

    #[test]
    fn the_cached_second_formats_as_humantime_does() {
        let seconds =
            [0u64, 1, 59, 951_782_400, 1_795_000_000, 1_795_000_000, 1_795_000_001, 4_102_444_799, 1_795_000_000];
        let nanos = [0u32, 1, 9, 10, 123_456_789, 999_999_999, 500_000_000, 7];
        for (i, &s) in seconds.iter().enumerate() {
            for &n in &nanos[i % 3..] {
                let time = UNIX_EPOCH + Duration::new(s, n);
                assert_eq!(rfc3339_nanos(time), humantime::format_rfc3339_nanos(time).to_string());
            }
        }
    }
}
