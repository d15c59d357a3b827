//! Standard 5-field cron schedules (minute hour day-of-month month day-of-week, UTC, as the
//! CronJob controller evaluates them without `timeZone`), plus the `@hourly`-style macros.

use jiff::civil::DateTime;
use jiff::{Timestamp, ToSpan, tz::TimeZone};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day-of-month and day-of-week both restricted: a day matches if either does (cron's rule).
    either_day: bool,
}

fn err(s: &str, reason: impl Into<String>) -> Error {
    Error::Cron {
        schedule: s.to_string(),
        reason: reason.into(),
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses one field into a bit set over `min..=max`; returns (bits, restricted).
fn field(
    schedule: &str,
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), Error> {
    let value = |s: &str| -> Result<u32, Error> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + name_base);
        }
        s.parse::<u32>()
            .map_err(|_| err(schedule, format!("{s:?} is not a number")))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| err(schedule, format!("bad step in {part:?}")))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/10` means from 5 to the end in steps of 10.
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(err(schedule, format!("{part:?} is outside {min}-{max}")));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, text != "*" && text != "?"))
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, Error> {
        let expanded = match s.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(err(s, format!("expected 5 fields, found {}", f.len())));
        }
        let (minutes, _) = field(s, f[0], 0, 59, &[], 0)?;
        let (hours, _) = field(s, f[1], 0, 23, &[], 0)?;
        let (days, dom_restricted) = field(s, f[2], 1, 31, &[], 0)?;
        let (months, _) = field(s, f[3], 1, 12, &MONTHS, 1)?;
        let (mut weekdays, dow_restricted) = field(s, f[4], 0, 7, &DAYS, 0)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            either_day: dom_restricted && dow_restricted,
        })
    }

    fn day_matches(&self, t: &DateTime) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first scheduled minute strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let tz = TimeZone::UTC;
        let mut t = tz
            .to_datetime(after)
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        // Skip whole months/days/hours that cannot match; a valid schedule matches within 5 years.
        let limit = t.checked_add(5.years()).ok()?;
        while t < limit {
            if self.months & (1 << t.month()) == 0 {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day();
            } else if !self.day_matches(&t) {
                t = t.start_of_day().checked_add(1.day()).ok()?;
            } else if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
            } else if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
            } else {
                return tz.to_timestamp(t).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_steps() {
        let every5 = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            every5.next_after(ts("2026-03-01T10:02:30Z")),
            Some(ts("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            every5.next_after(ts("2026-03-01T10:05:00Z")),
            Some(ts("2026-03-01T10:10:00Z"))
        );
        let nightly = Schedule::parse("30 2 * * mon-fri").unwrap();
        // 2026-03-07 is a Saturday: next is Monday the 9th.
        assert_eq!(
            nightly.next_after(ts("2026-03-07T00:00:00Z")),
            Some(ts("2026-03-09T02:30:00Z"))
        );
        let monthly = Schedule::parse("@monthly").unwrap();
        assert_eq!(
            monthly.next_after(ts("2026-12-15T00:00:00Z")),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        let either = Schedule::parse("0 0 13 * 5").unwrap();
        assert_eq!(
            either.next_after(ts("2026-03-01T00:00:00Z")),
            Some(ts("2026-03-06T00:00:00Z"))
        );
        let sunday7 = Schedule::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday7.next_after(ts("2026-03-02T00:00:00Z")),
            Some(ts("2026-03-08T00:00:00Z"))
        );
    }

    #[test]
    fn rejects_bad_schedules() {
        for bad in [
            "* * * *",
            "61 * * * *",
            "*/0 * * * *",
            "x * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Schedule::parse("0 0 31 2 *")
                .unwrap()
                .next_after(ts("2026-01-01T00:00:00Z"))
                .is_none()
        );
    }
}
