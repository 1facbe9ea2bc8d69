//! `[[camera]] sampling`: which of a camera's frames its detectors see.

use serde::{Deserialize, Deserializer};

/// Which frames of a camera the detector sees.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Sampling {
    /// Keyframes only: delta frames are dropped before the decoder.
    #[default]
    Keyframes,
    /// At most this many frames per second.
    Fps(f64),
}

impl<'de> Deserialize<'de> for Sampling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_sampling(&s).map_err(serde::de::Error::custom)
    }
}

fn parse_sampling(s: &str) -> Result<Sampling, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("keyframes") {
        return Ok(Sampling::Keyframes);
    }
    let num = t.strip_suffix("fps").map(str::trim).ok_or_else(|| {
        format!("sampling `{s}`: expected \"keyframes\" or a rate such as \"2fps\"")
    })?;
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 120.0 => Ok(Sampling::Fps(v)),
        _ => Err(format!(
            "sampling `{s}`: the rate must be a number above 0 and at most 120, such as \"2fps\""
        )),
    }
}
