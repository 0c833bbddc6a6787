//! What people read: dates instead of epoch milliseconds, rates with thousands
//! separators and one decimal. (Twenty lines of calendar arithmetic instead of a date
//! crate: the client only ever prints UTC.)

/// Unix milliseconds as `2026-12-02 15:54:24 UTC`.
pub fn date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// `1234.5678` as `1,234.6` (one decimal, thousands separated).
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let s = format!("{:.1}", x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "0"));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && s != "0.0" { "-" } else { "" };
    format!("{sign}{grouped}.{frac}")
}

/// A rate per second: `1,234.5/s`.
pub fn rate(x: f64) -> String {
    format!("{}/s", number(x))
}

/// `x` rounded to three decimals (for the JSON lines: µs resolution on milliseconds).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Every float in a JSON value rounded to three decimals, integers left alone.
pub fn round_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(r) = n
                .as_f64()
                .and_then(|f| serde_json::Number::from_f64(round3(f)))
            {
                *n = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(round_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(round_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_795_458_340_215), "2026-11-23 18:25:40 UTC");
        assert_eq!(date(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(date(1_709_251_199_999), "2024-02-29 23:59:59 UTC");
        assert_eq!(date(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn rates_are_rounded_and_grouped() {
        assert_eq!(rate(1234.5678901), "1,234.6/s");
        assert_eq!(number(0.04), "0.0");
        assert_eq!(number(999.96), "1,000.0");
        assert_eq!(number(1_234_567.0), "1,234,567.0");
        assert_eq!(number(-1234.5), "-1,234.5");
        assert_eq!(number(12.0), "12.0");
    }

    #[test]
    fn json_floats_are_rounded_integers_kept() {
        let mut v = serde_json::json!({"a": 1.234_567_8, "b": [2.000_04, 7], "c": {"d": u64::MAX}});
        round_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": 1.235, "b": [2.0, 7], "c": {"d": u64::MAX}})
        );
    }
}
