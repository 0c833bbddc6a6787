//! What people read: dates instead of epoch milliseconds, rates with thousands
//! separators and one decimal.

use std::time::{Duration, UNIX_EPOCH};

/// Unix milliseconds as an HTTP date, `Wed, 02 Dec 2026 15:54:24 GMT` (the form the
/// server's own messages use; before 1970 reads as 1970).
pub fn date(ms: i64) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(UNIX_EPOCH + since_epoch)
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
    fn dates_are_http_dates() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(1_795_458_340_215), "Mon, 23 Nov 2026 18:25:40 GMT");
        assert_eq!(date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(-1), "Thu, 01 Jan 1970 00:00:00 GMT");
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
