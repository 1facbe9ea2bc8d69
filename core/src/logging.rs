//! Log output: `tracing` with `RUST_LOG`-style filtering (default `info`),
//! as human-readable text or one JSON object per line for log shippers; and
//! [`untrusted`], the form every text from outside takes in a log line.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call once per process; later calls
/// are ignored (tests start several daemons in one process).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = installed {
        // A subscriber is already installed (a test harness, a second call): logs go
        // to that one.
        eprintln!("logging already set up, keeping it: {e}");
    }
}

/// Text from outside (an operator's name, an alert id or label from a
/// request, a peer's words) as a log field or message part: every control
/// character, line and paragraph separator and bidirectional override is
/// written as an escape (`\n`, `\u{1b}`), and `\` as `\\`, so one request
/// can never start a forged log line, hide a real one behind terminal
/// escapes, or make a log reader's `grep` see what is not there. Other
/// characters (operators' names in any script) stay as they are. Log it
/// with `%`: `operator = %untrusted(&name)`.
pub fn untrusted(text: &str) -> Untrusted<'_> {
    Untrusted(text)
}

/// See [`untrusted`].
pub struct Untrusted<'a>(&'a str);

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::untrusted;

    #[test]
    fn untrusted_text_cannot_break_a_line() {
        let forged = "li\n2026-11-29T08:15:00Z  INFO alert acknowledged operator=chief\x1b[2K\r\u{2028}\u{202e}";
        let shown = untrusted(forged).to_string();
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "li\\n2026-11-29T08:15:00Z  INFO alert acknowledged operator=chief\\u{1b}[2K\\r\\u{2028}\\u{202e}"
        );
        // Names in any script stay readable; a backslash cannot fake an escape.
        assert_eq!(untrusted("值班员 Łukasz").to_string(), "值班员 Łukasz");
        assert_eq!(untrusted("a\\nb").to_string(), "a\\\\nb");
    }
}
