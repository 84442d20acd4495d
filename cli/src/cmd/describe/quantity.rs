//! Just enough of Kubernetes' resource.Quantity for describe: parse `500m`, `1.5`, `128Mi`,
//! `1e3` into a number of base units, compare them, and print sums back in a canonical form.

/// The value of a quantity string in base units (cores, bytes), or None if it does not parse.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// Whether a quantity string uses a binary suffix (`Mi`), so sums are printed the same way.
pub fn is_binary(q: &str) -> bool {
    q.ends_with('i')
}

/// A value in base units printed the way Kubernetes prints quantities: whole numbers as is,
/// fractions in milli-units (`250m`), binary amounts with the largest exact suffix (`192Mi`).
pub fn format(value: f64, binary: bool) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let rounded = value.round();
    if (value - rounded).abs() > 1e-9 {
        return format!("{}m", (value * 1000.0).round() as i64);
    }
    let n = rounded as i64;
    if binary {
        for (suffix, power) in [
            ("Ei", 6),
            ("Pi", 5),
            ("Ti", 4),
            ("Gi", 3),
            ("Mi", 2),
            ("Ki", 1),
        ] {
            let unit = 1024i64.pow(power);
            if n % unit == 0 {
                return format!("{}{suffix}", n / unit);
            }
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_usual_forms() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("128Mi"), Some(134217728.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("1.5Gi"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("x"), None);
        assert_eq!(format(0.25, false), "250m");
        assert_eq!(format(3.0, false), "3");
        assert_eq!(format(192.0 * 1024.0 * 1024.0, true), "192Mi");
        assert_eq!(format(1000.0, true), "1000");
        assert_eq!(format(0.0, true), "0");
    }
}
