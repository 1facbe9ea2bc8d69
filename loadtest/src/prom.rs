//! Reading the Prometheus text exposition that the gateway and the center
//! serve on `/metrics`: every scan of a metrics page in this tool goes
//! through here (sums of a metric's series, sums over series with given
//! labels, one label's value, whether a series exists).

/// One sample line of a metrics page: `name{labels} value`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample<'a> {
    /// The line as written (for label look-ups).
    pub line: &'a str,
    /// The sample's value (counters are floats on the wire too).
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// Whether the sample carries the label `key="value"`.
    pub(crate) fn has(&self, key: &str, value: &str) -> bool {
        self.line.contains(&format!("{key}=\"{value}\""))
    }

    /// The value of label `key`, as written (`None` without it).
    pub(crate) fn label(&self, key: &str) -> Option<&'a str> {
        self.line
            .split_once(&format!("{key}=\""))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v)
    }
}

/// The value at the end of a sample line.
fn value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse::<f64>().ok()
}

/// The samples of metric `name` with labels (`name{…} value`).
pub(crate) fn labelled<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Sample<'a>> {
    text.lines()
        .filter(move |l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|line| {
            Some(Sample {
                line,
                value: value(line)?,
            })
        })
}

/// Sum of every series of a metric, with labels or without.
pub(crate) fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter_map(value)
        // An empty sum is -0.0; report 0.
        .fold(0.0, |a, b| a + b)
}

/// Sum of a metric's series that carry every one of `labels`.
pub(crate) fn sum_with(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    labelled(text, name)
        .filter(|s| labels.iter().all(|(k, v)| s.has(k, v)))
        .fold(0.0, |a, s| a + s.value)
}

/// Whether the page has a series of `name` with every one of `labels`.
pub(crate) fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    labelled(text, name).any(|s| labels.iter().all(|(k, v)| s.has(k, v)))
}

/// The roles of the gateway's `lookout_cpu_seconds_total`.
pub(crate) const ROLES: [&str; 5] = ["ingest", "decode", "detect", "runtime", "other"];

/// CPU seconds by role from a gateway's metrics.
pub(crate) fn cpu_by_role(text: &str) -> [f64; ROLES.len()] {
    ROLES.map(|r| sum_with(text, "lookout_cpu_seconds_total", &[("role", r)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# TYPE lookout_relay_gops_total counter
lookout_relay_gops_total{camera=\"a\",outcome=\"sent\"} 4
lookout_relay_gops_total{camera=\"b\",outcome=\"sent\"} 3
lookout_relay_gops_total{camera=\"a\",outcome=\"reset\"} 1
lookout_relay_gops_totally{camera=\"a\",outcome=\"sent\"} 100
lookout_uptime_seconds 12.5
";

    #[test]
    fn sums_by_name_and_labels() {
        assert_eq!(sum(PAGE, "lookout_relay_gops_total"), 8.0);
        assert_eq!(sum(PAGE, "lookout_uptime_seconds"), 12.5);
        assert_eq!(sum(PAGE, "absent"), 0.0);
        assert_eq!(
            sum_with(PAGE, "lookout_relay_gops_total", &[("outcome", "sent")]),
            7.0
        );
        assert_eq!(
            sum_with(
                PAGE,
                "lookout_relay_gops_total",
                &[("camera", "a"), ("outcome", "reset")]
            ),
            1.0
        );
        assert!(has_series(
            PAGE,
            "lookout_relay_gops_total",
            &[("camera", "b")]
        ));
        assert!(!has_series(
            PAGE,
            "lookout_relay_gops_total",
            &[("camera", "c")]
        ));
        let s = labelled(PAGE, "lookout_relay_gops_total")
            .next()
            .expect("a sample");
        assert_eq!(s.label("outcome"), Some("sent"));
        assert_eq!(s.label("le"), None);
    }
}
