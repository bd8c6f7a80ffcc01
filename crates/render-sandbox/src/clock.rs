//! The virtual clock: unix seconds that run `scale` times faster than real time, so a test lives
//! through a whole night (and the 24 h download window) in seconds.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One virtual day in seconds.
pub const DAY: i64 = 86_400;

#[derive(Debug)]
pub struct Clock {
    origin_real: Instant,
    origin_virtual: f64,
    /// Virtual seconds per real second.
    scale: f64,
    /// Seconds added by `advance` (tests jumping ahead to expire things).
    jumped: Mutex<f64>,
}

impl Clock {
    /// A clock starting at `start` (unix seconds; real now when `None`) on which `day` of real
    /// time is 24 virtual hours.
    pub fn new(start: Option<i64>, day: Duration) -> Clock {
        let start = start.unwrap_or_else(real_unix_now) as f64;
        let day = day.as_secs_f64().max(1e-3);
        Clock {
            origin_real: Instant::now(),
            origin_virtual: start,
            scale: DAY as f64 / day,
            jumped: Mutex::new(0.0),
        }
    }

    /// Virtual unix time, with sub-second precision (the engine schedules on it).
    pub fn now_f64(&self) -> f64 {
        let jumped = *self.jumped.lock().unwrap_or_else(|e| e.into_inner());
        self.origin_virtual + self.origin_real.elapsed().as_secs_f64() * self.scale + jumped
    }

    /// Virtual unix time in whole seconds, as the API shows it.
    pub fn now(&self) -> i64 {
        self.now_f64().floor() as i64
    }

    /// How many virtual seconds pass during `real` time.
    pub fn virtual_span(&self, real: Duration) -> f64 {
        real.as_secs_f64() * self.scale
    }

    /// How much real time `virtual_seconds` take.
    pub fn real_span(&self, virtual_seconds: f64) -> Duration {
        Duration::from_secs_f64((virtual_seconds / self.scale).max(0.0))
    }

    /// Virtual unix time at which the clock started.
    pub fn origin(&self) -> i64 {
        self.origin_virtual as i64
    }

    /// Real milliseconds since the clock started.
    pub fn real_ms(&self) -> u64 {
        self.origin_real.elapsed().as_millis() as u64
    }

    /// Real milliseconds since the clock started at which it read (or will read) virtual time
    /// `at`, taking the jumps made so far as if they had been made before `at`.
    pub fn real_ms_at(&self, at: f64) -> u64 {
        let jumped = *self.jumped.lock().unwrap_or_else(|e| e.into_inner());
        let real = (at - self.origin_virtual - jumped) / self.scale;
        (real.max(0.0) * 1000.0).round() as u64
    }

    /// Jumps virtual time forward (negative values are ignored: time never runs back).
    pub fn advance(&self, seconds: f64) {
        if seconds > 0.0 {
            *self.jumped.lock().unwrap_or_else(|e| e.into_inner()) += seconds;
        }
    }
}

fn real_unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats unix seconds as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 IMF-fixdate).
pub fn http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(DAY);
    let secs = unix.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_match_known_values() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(1_709_251_200), "Fri, 01 Mar 2024 00:00:00 GMT");
    }

    #[test]
    fn a_real_day_is_a_virtual_day() {
        let clock = Clock::new(Some(1_000), Duration::from_secs(60));
        assert!((clock.virtual_span(Duration::from_secs(60)) - DAY as f64).abs() < 1e-6);
        assert_eq!(clock.real_span(DAY as f64), Duration::from_secs(60));
        clock.advance(500.0);
        clock.advance(-100.0);
        assert!(clock.now() >= 1_500);
    }
}
