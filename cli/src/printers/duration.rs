//! Ages and durations as kubectl shows them (`duration.HumanDuration` of apimachinery): about two
//! significant figures, from `45s` through `3m12s`, `5h20m` and `3d4h` to `2y45d`.

use jiff::Timestamp;

/// A duration in whole seconds, as kubectl's `HumanDuration` prints it. Up to a second in the
/// future still reads `0s` (clock skew between machines); further is `<invalid>`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parse a Kubernetes timestamp (RFC 3339, as in `creationTimestamp`).
pub fn parse_timestamp(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// The age of a timestamp field at `now` (kubectl's `translateTimestampSince`): `<unknown>` when
/// the field is missing or unreadable.
pub fn since(timestamp: Option<&str>, now: Timestamp) -> String {
    match timestamp.and_then(parse_timestamp) {
        Some(t) => between(t, now),
        None => "<unknown>".into(),
    }
}

/// The time from `start` to `end`, humanized.
pub fn between(start: Timestamp, end: Timestamp) -> String {
    // Whole seconds, truncated toward zero like Go's `int(d.Seconds())`.
    let seconds = (end.as_nanosecond() - start.as_nanosecond()) / 1_000_000_000;
    human_duration(i64::try_from(seconds).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_kubectl() {
        let table: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (599, "9m59s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 20 * 60, "5h20m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (8 * 86400, "8d"),
            (12 * 86400 + 5 * 3600, "12d"),
            (729 * 86400, "729d"),
            (2 * 365 * 86400, "2y"),
            ((2 * 365 + 45) * 86400, "2y45d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400 + 100 * 86400, "20y"),
        ];
        for (seconds, want) in table {
            assert_eq!(human_duration(*seconds), *want, "{seconds}s");
        }
    }

    #[test]
    fn since_reads_rfc3339_and_reports_missing_fields() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(since(Some("2024-05-01T11:56:48Z"), now), "3m12s");
        assert_eq!(since(Some("2024-04-28T08:00:00Z"), now), "3d4h");
        // Fractional seconds round down, as Go's duration truncation does.
        assert_eq!(since(Some("2024-05-01T11:59:59.5Z"), now), "0s");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("yesterday"), now), "<unknown>");
    }
}
