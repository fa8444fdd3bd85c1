//! The one place where durations (`"30s"`) and sizes (`"128MiB"`) in config files are parsed.

use std::time::Duration;

/// Parses a duration such as `"50ms"`, `"30s"`, `"5m"` or `"1h 30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
        return Err(format!("`{text}` has no unit; write e.g. \"{text}s\" or \"{text}ms\""));
    }
    // humantime's own wording ("expected number at 0") names no unit a user could write.
    humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is not a duration: write a number and a unit, e.g. \"500ms\", \"30s\", \"5m\" or \"1h 30m\"")
    })
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses a size such as `"128MiB"`, `"1GiB"` or `"512KiB"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.chars().all(|c| c.is_ascii_digit()) && !trimmed.is_empty() {
        return Err(format!("`{trimmed}` has no unit; write e.g. \"{trimmed}MiB\""));
    }
    trimmed
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("`{trimmed}` is not a size: write a number and a unit, e.g. \"512KiB\", \"128MiB\" or \"1GiB\"")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        for bad in ["fast", "10 furlongs", "ms"] {
            let message = parse_duration(bad).unwrap_err();
            assert!(message.contains("e.g. \"500ms\""), "{message}");
            assert!(!message.contains("expected") && !message.contains("unit \""), "{message}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 * 1024 * 1024);
        assert_eq!(parse_size("1GiB").unwrap(), 1024 * 1024 * 1024);
        assert!(parse_size("128").unwrap_err().contains("no unit"));
        for bad in ["lots", "12 parsecs"] {
            let message = parse_size(bad).unwrap_err();
            assert!(message.contains("e.g. \"512KiB\""), "{message}");
        }
    }
}
