//! Numbers as a timeline writes them: coordinates and value labels.

/// A coordinate with one fixed decimal, never `-0.0`.
pub(super) fn num(v: f64) -> String {
    if v.abs() < 0.05 || !v.is_finite() {
        "0.0".to_owned()
    } else {
        format!("{v:.1}")
    }
}

/// A data value for a label: three decimals without trailing zeros, or scientific
/// notation when that would hide it.
pub(super) fn value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() || v == 0.0 {
            "0".to_owned()
        } else if v > 0.0 {
            "∞".to_owned()
        } else {
            "-∞".to_owned()
        };
    }
    if v.abs() >= 1e6 || v.abs() < 1e-3 {
        return format!("{v:.2e}");
    }
    let fixed = format!("{v:.3}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_labels_are_fixed_precision() {
        assert_eq!(value(0.0), "0");
        assert_eq!(value(-0.0), "0");
        assert_eq!(value(0.95), "0.95");
        assert_eq!(value(-0.0001), "-1.00e-4");
        assert_eq!(value(1234.5678), "1234.568");
        assert_eq!(value(2_000_000.0), "2.00e6");
        assert_eq!(value(-0.0004), "-4.00e-4");
        assert_eq!(num(-0.01), "0.0");
        assert_eq!(num(f64::NAN), "0.0");
        assert_eq!(num(12.345), "12.3");
    }
}
