//! CronJob schedules: five-field cron expressions and macros (`@hourly`, `@daily`, …) parsed by
//! `croner` and evaluated in the CronJob's IANA time zone (`chrono-tz`, UTC by default), plus
//! `@every <duration>`; and Kubernetes' search for the most recent unmet schedule after a
//! downtime (`mostRecentScheduleTime`).

use std::str::FromStr;
use std::time::Duration;

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::{SignedDuration, Timestamp};

/// More missed schedules than this since the last one are reported (`TooManyMissedTimes`).
pub const MANY_MISSED: i64 = 100;

/// Why a CronJob cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// `timeZone` (or a `TZ=` prefix) names no IANA time zone.
    UnknownTimeZone(String),
    /// The schedule is not a cron expression, a macro or `@every <duration>`.
    Unparseable(String),
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A cron expression, evaluated in the zone's wall-clock time.
    Cron { cron: Box<Cron>, zone: Tz },
    /// `@every <duration>`: a fixed interval (whole seconds, at least one).
    Every(Duration),
}

/// The most recent unmet schedule before a time, and how many were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmet {
    pub most_recent: Option<Timestamp>,
    /// Roughly how many scheduled times passed since the earliest time (0 when at most one).
    pub missed: i64,
}

impl Schedule {
    /// Parse `schedule` for the time zone `time_zone` (UTC when absent). A legacy `TZ=<zone>` or
    /// `CRON_TZ=<zone>` prefix of the schedule wins over `time_zone`, as in Kubernetes.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let mut rest = schedule.trim();
        let mut zone_name = time_zone.map(str::to_string);
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(tail) = rest.strip_prefix(prefix) {
                let (zone, fields) = tail.split_once(char::is_whitespace).unwrap_or((tail, ""));
                zone_name = Some(zone.to_string());
                rest = fields.trim();
            }
        }
        let zone = match zone_name.as_deref() {
            None | Some("") => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|e| {
                ScheduleError::UnknownTimeZone(format!("unknown time zone {name:?}: {e}"))
            })?,
        };
        if let Some(every) = rest.strip_prefix("@every") {
            let d = parse_go_duration(every.trim()).map_err(ScheduleError::Unparseable)?;
            // Like robfig/cron: whole seconds, at least one.
            return Ok(Schedule::Every(Duration::from_secs(d.as_secs().max(1))));
        }
        let expr = if rest.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            rest
        };
        if !expr.starts_with('@') && expr.split_whitespace().count() != 5 {
            return Err(ScheduleError::Unparseable(format!(
                "expected exactly 5 fields, found {}: {rest:?}",
                expr.split_whitespace().count()
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expr)
            .map_err(|e| ScheduleError::Unparseable(e.to_string()))?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            zone,
        })
    }

    /// The zone the schedule's wall-clock times are in.
    pub fn zone(&self) -> Tz {
        match self {
            Schedule::Cron { zone, .. } => *zone,
            Schedule::Every(_) => Tz::UTC,
        }
    }

    /// The first scheduled time strictly after `t` (None if there is none in reach).
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(SignedDuration::try_from(*d).ok()?).ok()
            }
            Schedule::Cron { cron, zone } => {
                let local = zone.timestamp_opt(t.as_second(), 0).single()?;
                let next = cron.find_next_occurrence(&local, false).ok()?;
                Timestamp::from_second(next.timestamp()).ok()
            }
        }
    }

    /// Kubernetes' `mostRecentScheduleTime`: the latest scheduled time in `(earliest, now]`,
    /// found without walking every missed time when many were missed. Errs for a schedule
    /// whose consecutive times are less than a second apart (one that never fires, such as
    /// February 31st).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> Result<Unmet, String> {
        let none = Unmet {
            most_recent: None,
            missed: 0,
        };
        let Some(t1) = self.next(earliest) else {
            return Ok(none);
        };
        if now < t1 {
            return Ok(none);
        }
        let Some(t2) = self.next(t1) else {
            return Ok(Unmet {
                most_recent: Some(t1),
                missed: 0,
            });
        };
        if now < t2 {
            return Ok(Unmet {
                most_recent: Some(t1),
                missed: 0,
            });
        }
        let between = t2
            .duration_since(t1)
            .round(jiff::Unit::Second)
            .map_or(0, |d| d.as_secs());
        if between < 1 {
            return Err("time difference between two schedules is less than 1 second".into());
        }
        let elapsed = now.duration_since(t1).as_secs();
        let missed = elapsed / between + 1;
        // Start one interval before the estimated last time, for schedules whose intervals
        // differ (`30 6-16/4 * * 1-5`).
        let from = t1.checked_add(SignedDuration::from_secs((missed - 2) * between));
        let mut most_recent = None;
        let mut t = from.ok().and_then(|f| self.next(f));
        while let Some(at) = t.filter(|at| *at <= now) {
            most_recent = Some(at);
            t = self.next(at);
        }
        Ok(Unmet {
            most_recent,
            missed,
        })
    }
}

/// Go's `time.ParseDuration` for the units a schedule uses: a sequence of decimal numbers with
/// units `ns`, `us`, `µs`, `ms`, `s`, `m` or `h` ("1h30m", "90s", "1.5h").
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} for @every (accepted: e.g. 90s, 5m, 1h30m)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(sched: &str, zone: Option<&str>, after: &str) -> String {
        Schedule::parse(sched, zone)
            .unwrap()
            .next(ts(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn five_field_schedules_and_macros() {
        let cases = [
            (
                "*/5 * * * *",
                "2024-05-01T12:03:10Z",
                "2024-05-01T12:05:00Z",
            ),
            (
                "*/5 * * * *",
                "2024-05-01T12:05:00Z",
                "2024-05-01T12:10:00Z",
            ),
            (
                "30 6-16/4 * * 1-5",
                "2024-05-03T15:00:00Z",
                "2024-05-06T06:30:00Z",
            ),
            (
                "0 0 1,15 * *",
                "2024-05-02T00:00:00Z",
                "2024-05-15T00:00:00Z",
            ),
            ("@hourly", "2024-05-01T12:03:00Z", "2024-05-01T13:00:00Z"),
            ("@daily", "2024-05-01T12:03:00Z", "2024-05-02T00:00:00Z"),
            ("@midnight", "2024-05-01T12:03:00Z", "2024-05-02T00:00:00Z"),
            ("@weekly", "2024-05-01T12:03:00Z", "2024-05-05T00:00:00Z"),
            ("@monthly", "2024-05-01T12:03:00Z", "2024-06-01T00:00:00Z"),
            ("@yearly", "2024-05-01T12:03:00Z", "2025-01-01T00:00:00Z"),
            (
                "@every 1h30m",
                "2024-05-01T12:03:00.5Z",
                "2024-05-01T13:33:00Z",
            ),
        ];
        for (sched, after, want) in cases {
            assert_eq!(next(sched, None, after), want, "{sched} after {after}");
        }
    }

    #[test]
    fn time_zones_follow_wall_clock_time() {
        // 09:00 in Berlin is 07:00 UTC in summer (CEST) and 08:00 UTC in winter (CET).
        let summer = next("0 9 * * *", Some("Europe/Berlin"), "2024-07-01T10:00:00Z");
        assert_eq!(summer, "2024-07-02T07:00:00Z");
        let winter = next("0 9 * * *", Some("Europe/Berlin"), "2024-01-01T10:00:00Z");
        assert_eq!(winter, "2024-01-02T08:00:00Z");
        let legacy = next(
            "TZ=America/New_York 0 9 * * *",
            None,
            "2024-07-01T00:00:00Z",
        );
        assert_eq!(legacy, "2024-07-01T13:00:00Z");
        assert!(matches!(
            Schedule::parse("0 9 * * *", Some("Mars/Olympus_Mons")),
            Err(ScheduleError::UnknownTimeZone(_))
        ));
    }

    #[test]
    fn malformed_schedules_are_rejected() {
        for bad in [
            "* * * *",
            "0 0 * * * *",
            "61 * * * *",
            "@every",
            "@every 5x",
            "@often",
        ] {
            assert!(
                matches!(
                    Schedule::parse(bad, None),
                    Err(ScheduleError::Unparseable(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn most_recent_unmet_time_after_a_downtime() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        let at = |e: &str, n: &str| s.most_recent(ts(e), ts(n)).unwrap();
        let none = at("2024-05-01T12:00:00Z", "2024-05-01T12:04:59Z");
        assert_eq!(none.most_recent, None);
        let one = at("2024-05-01T12:00:00Z", "2024-05-01T12:05:00Z");
        assert_eq!(one.most_recent, Some(ts("2024-05-01T12:05:00Z")));
        let many = at("2024-05-01T12:00:00Z", "2024-05-01T14:07:00Z");
        assert_eq!(many.most_recent, Some(ts("2024-05-01T14:05:00Z")));
        assert_eq!(many.missed, 25);
        let days = at("2024-05-01T12:00:00Z", "2024-05-03T12:01:00Z");
        assert_eq!(days.most_recent, Some(ts("2024-05-03T12:00:00Z")));
        assert!(days.missed > MANY_MISSED);
        let never = Schedule::parse("59 23 31 2 *", None).unwrap();
        let r = never.most_recent(ts("2024-05-01T12:00:00Z"), ts("2030-05-01T12:00:00Z"));
        assert_eq!(r.map(|u| u.most_recent), Ok(None));
    }
}
