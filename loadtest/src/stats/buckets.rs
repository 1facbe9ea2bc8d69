//! Frame delays as the center's Prometheus histograms hold them
//! (`lookout_center_frame_delay_seconds`, buckets from 50 µs doubling to 3.3 s), summed
//! over cameras: read once a second by the run, their differences give the relay's
//! delay second by second (the report's `timeline[].relay_ms`), and the difference
//! between the window's end and start gives the whole distribution (`relay_cdf`). The
//! HDR percentiles of `/api/latency` stay the report's figures; these are for seeing
//! when and how the delay moved, at the buckets' factor-of-two resolution.

use serde::Serialize;

use crate::prom;

/// Cumulative counts per upper bound, as Prometheus writes a histogram.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Buckets {
    /// Upper bounds in seconds, ascending; the last is `+Inf`.
    pub le: Vec<f64>,
    /// Observations at or below each bound.
    pub cumulative: Vec<u64>,
}

impl Buckets {
    /// The histogram of frame delays measured `from` (`gateway` for the relay, or
    /// `capture`) summed over every camera of the metrics page; `None` when the page
    /// has none.
    pub(crate) fn of_center(page: &str, from: &str) -> Option<Buckets> {
        let mut sums: Vec<(f64, u64)> = Vec::new();
        for sample in prom::labelled(page, "lookout_center_frame_delay_seconds_bucket")
            .filter(|s| s.has("from", from))
        {
            let Some(le) = sample.label("le") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            let count = sample.value;
            match sums.iter_mut().find(|(b, _)| *b == le) {
                Some(s) => s.1 += count as u64,
                None => sums.push((le, count as u64)),
            }
        }
        if sums.is_empty() {
            return None;
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Buckets {
            le: sums.iter().map(|s| s.0).collect(),
            cumulative: sums.iter().map(|s| s.1).collect(),
        })
    }

    /// What was observed after `earlier` (same bounds); `None` when the bounds differ.
    pub(crate) fn since(&self, earlier: &Buckets) -> Option<Buckets> {
        (self.le == earlier.le).then(|| Buckets {
            le: self.le.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        })
    }

    pub(crate) fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The `q` quantile in milliseconds, interpolated linearly inside its bucket (the
    /// first bucket from 0); `None` without observations. A quantile above the last
    /// finite bound is that bound: the histogram says only "at least".
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q * n as f64).ceil().max(1.0);
        let mut lower = (0.0, 0u64);
        for (le, c) in self.le.iter().zip(&self.cumulative) {
            if *c as f64 >= rank {
                if !le.is_finite() {
                    return Some(lower.0 * 1000.0);
                }
                let inside = (*c - lower.1) as f64;
                let share = if inside > 0.0 {
                    (rank - lower.1 as f64) / inside
                } else {
                    1.0
                };
                return Some((lower.0 + (le - lower.0) * share) * 1000.0);
            }
            lower = (*le, *c);
        }
        None
    }

    /// A percentile object as every report writes one (`p50`, `p90`, `p99`, `p999`,
    /// `max` in milliseconds, and `count`); `max` is the upper bound of the highest
    /// bucket used. `null`s when empty.
    pub(crate) fn summary(&self) -> DelaySummary {
        DelaySummary {
            count: self.count(),
            max: self.quantile_ms(1.0),
            p50: self.quantile_ms(0.5),
            p90: self.quantile_ms(0.9),
            p99: self.quantile_ms(0.99),
            p999: self.quantile_ms(0.999),
        }
    }

    /// The cumulative share at each finite bound: `[{"le_ms", "share"}]`.
    pub(crate) fn cdf(&self) -> Vec<CdfPoint> {
        let n = self.count().max(1) as f64;
        self.le
            .iter()
            .zip(&self.cumulative)
            .filter(|(le, _)| le.is_finite())
            .map(|(le, c)| CdfPoint {
                le_ms: le * 1000.0,
                share: *c as f64 / n,
            })
            .collect()
    }
}

/// Delay percentiles read off the buckets ([`Buckets::summary`]): each figure
/// interpolated inside its bucket, so only as fine as the buckets' factor of
/// two. Fields in alphabetical order, the order the report has always had.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelaySummary {
    /// Observations in the buckets (frames).
    pub count: u64,
    /// The upper bound of the highest bucket used, ms; `null` without observations.
    pub max: Option<f64>,
    /// Median, ms; `null` without observations.
    pub p50: Option<f64>,
    /// 90th percentile, ms; `null` without observations.
    pub p90: Option<f64>,
    /// 99th percentile, ms; `null` without observations.
    pub p99: Option<f64>,
    /// 99.9th percentile, ms; `null` without observations.
    pub p999: Option<f64>,
}

/// One point of a cumulative delay distribution ([`Buckets::cdf`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CdfPoint {
    /// The bucket's upper bound, ms.
    pub le_ms: f64,
    /// Share of the observations at or below `le_ms`, 0 to 1.
    pub share: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# TYPE lookout_center_frame_delay_seconds histogram
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"a\",from=\"gateway\",le=\"0.001\"} 50
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"a\",from=\"gateway\",le=\"0.002\"} 90
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"a\",from=\"gateway\",le=\"+Inf\"} 100
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"b\",from=\"gateway\",le=\"0.001\"} 50
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"b\",from=\"gateway\",le=\"0.002\"} 100
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"b\",from=\"gateway\",le=\"+Inf\"} 100
lookout_center_frame_delay_seconds_bucket{gateway=\"gw\",camera=\"b\",from=\"capture\",le=\"0.001\"} 7
lookout_center_frame_delay_seconds_count{gateway=\"gw\",camera=\"b\",from=\"gateway\"} 100
";

    #[test]
    fn cameras_are_summed_and_quantiles_read_inside_their_bucket() {
        let b = Buckets::of_center(PAGE, "gateway").expect("buckets");
        assert_eq!(b.le, vec![0.001, 0.002, f64::INFINITY]);
        assert_eq!(b.cumulative, vec![100, 190, 200]);
        // Rank 100 of 200 is the first bucket's last: its upper bound.
        assert_eq!(b.quantile_ms(0.5), Some(1.0));
        // Rank 170: 70 of the 90 between 1 and 2 ms.
        let p85 = b.quantile_ms(0.85).expect("p85");
        assert!((p85 - (1.0 + 70.0 / 90.0)).abs() < 1e-9, "{p85}");
        // Above the last finite bound: at least that bound.
        assert_eq!(b.quantile_ms(0.99), Some(2.0));
        assert_eq!(
            Buckets::of_center(PAGE, "capture").map(|b| b.count()),
            Some(7)
        );
        assert_eq!(Buckets::of_center("", "gateway"), None);
    }

    #[test]
    fn a_second_is_the_difference_of_two_readings() {
        let start = Buckets::of_center(PAGE, "gateway").expect("buckets");
        let later = Buckets {
            le: start.le.clone(),
            cumulative: vec![110, 200, 210],
        };
        let d = later.since(&start).expect("same bounds");
        assert_eq!(d.cumulative, vec![10, 10, 10]);
        assert_eq!(d.summary().count, 10);
        assert_eq!(d.summary().p50, Some(0.5));
        let cdf = d.cdf();
        assert_eq!(cdf[1].share, 1.0);
        assert_eq!(cdf.len(), 2);
        let other = Buckets {
            le: vec![1.0],
            cumulative: vec![1],
        };
        assert_eq!(later.since(&other), None);
    }

    /// The typed summary and points write what the JSON maps they replaced wrote.
    #[test]
    fn summary_and_cdf_write_the_same_json_as_before() {
        let b = Buckets::of_center(PAGE, "gateway").expect("buckets");
        let q = |x: f64| b.quantile_ms(x);
        assert_eq!(
            serde_json::to_string(&b.summary()).expect("serializes"),
            serde_json::json!({
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                "max": q(1.0), "count": b.count(),
            })
            .to_string()
        );
        let empty = Buckets {
            le: vec![0.001, f64::INFINITY],
            cumulative: vec![0, 0],
        };
        assert_eq!(
            serde_json::to_string(&empty.summary()).expect("serializes"),
            r#"{"count":0,"max":null,"p50":null,"p90":null,"p99":null,"p999":null}"#
        );
        assert_eq!(
            serde_json::to_string(&b.cdf()).expect("serializes"),
            serde_json::json!([
                {"le_ms": 1.0, "share": 0.5},
                {"le_ms": 2.0, "share": 0.95},
            ])
            .to_string()
        );
    }
}
