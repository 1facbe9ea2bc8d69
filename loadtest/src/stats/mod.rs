//! Statistics the reports are made of: HDR histograms and their
//! percentiles (with the report's `null`-when-unmeasured convention), the
//! center's own percentile objects, ratios against a baseline, means and
//! medians, and (`buckets`) the center's Prometheus delay histograms.

pub(crate) mod buckets;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// Latency percentiles of one histogram, ms. With no sample (`count` 0)
/// the figures are 0.0 here and `null` in a report: nothing was measured.
#[derive(Debug, Clone, Default)]
pub struct Percentiles {
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest sample, ms.
    pub max: f64,
    /// Samples recorded; 0: nothing measured, the figures above are `null` in a report.
    pub count: u64,
}

impl Serialize for Percentiles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let measured = |v: f64| (self.count > 0).then_some(v);
        let mut st = s.serialize_struct("Percentiles", 6)?;
        st.serialize_field("p50", &measured(self.p50))?;
        st.serialize_field("p90", &measured(self.p90))?;
        st.serialize_field("p99", &measured(self.p99))?;
        st.serialize_field("p999", &measured(self.p999))?;
        st.serialize_field("max", &measured(self.max))?;
        st.serialize_field("count", &self.count)?;
        st.end()
    }
}

impl Percentiles {
    /// p99 when there was a sample.
    pub(crate) fn p99_measured(&self) -> Option<f64> {
        (self.count > 0).then_some(self.p99)
    }
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |v: u64| v as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        count: h.len(),
    }
}

/// Records `us` (µs) in `h`, a histogram of [`histogram`]'s bounds. A value past
/// its hour is left out of the percentiles, and said on stderr with `what` it
/// times: a dropped sample is data lost, not to be lost silently.
pub(crate) fn record(h: &mut Histogram<u64>, us: u64, what: &str) {
    if let Err(e) = h.record(us) {
        eprintln!("{what}: a sample of {us} µs is left out of the percentiles ({e})");
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

/// Percentiles as the center's `/api/latency` writes them (`p50_ms`, …).
pub(crate) fn center_percentiles(v: &Value) -> Percentiles {
    Percentiles {
        p50: v["p50_ms"].as_f64().unwrap_or(0.0),
        p90: v["p90_ms"].as_f64().unwrap_or(0.0),
        p99: v["p99_ms"].as_f64().unwrap_or(0.0),
        p999: v["p999_ms"].as_f64().unwrap_or(0.0),
        max: v["max_ms"].as_f64().unwrap_or(0.0),
        count: v["count"].as_u64().unwrap_or(0),
    }
}

/// `lookout ÷ baseline`, when both were measured and the baseline is above 0.
pub(crate) fn ratio(lookout: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (lookout, baseline) {
        (Some(l), Some(b)) if b > 0.0 => Some(l / b),
        _ => None,
    }
}

/// The mean, 0 for none.
pub(crate) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The median of the finite values, 0 for none.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}
