//! Alert evidence clips: `[gateway.clips]` (the defaults and the disk
//! budget) and a camera's own `clip = { … }`. A camera with a detector, or
//! with `clip` set, keeps a few seconds of its video in memory, and every
//! alert on it is written to an MP4 from before the alert to after it.

use serde::Deserialize;

use lookout_core::config::{Findings, KeyPath};

/// `[gateway.clips]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipsSection {
    /// Record clips at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds of video before the alert's frame (whole seconds, default 10).
    #[serde(default = "default_pre_s")]
    pub pre_s: u32,
    /// Seconds after the alert's frame, and after each update (default 20).
    #[serde(default = "default_post_s")]
    pub post_s: u32,
    /// Longest clip, however long the alert keeps being updated (default 120).
    #[serde(default = "default_max_s")]
    pub max_s: u32,
    /// Disk the clips may take (`STORAGE/clips/`), bytes (default 4 GiB).
    /// The oldest clip every upstream has acknowledged goes first; one an
    /// upstream still lacks is never evicted, so when those alone fill the
    /// budget no new clip is recorded (counted, logged) until one is sent.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Memory one camera's pre-roll may hold, bytes (default 32 MiB): a
    /// camera at a very high bit rate keeps less than `pre_s`.
    #[serde(default = "default_ring_bytes")]
    pub ring_max_bytes: u64,
}

impl Default for ClipsSection {
    fn default() -> Self {
        ClipsSection {
            enabled: true,
            pre_s: default_pre_s(),
            post_s: default_post_s(),
            max_s: default_max_s(),
            max_bytes: default_max_bytes(),
            ring_max_bytes: default_ring_bytes(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_pre_s() -> u32 {
    10
}
fn default_post_s() -> u32 {
    20
}
fn default_max_s() -> u32 {
    120
}
fn default_max_bytes() -> u64 {
    4 << 30
}
fn default_ring_bytes() -> u64 {
    32 << 20
}

/// `[[camera]] clip = { … }`: this camera's own clip settings; each key
/// left out is `[gateway.clips]`'s.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraClip {
    /// `false` records no clips of this camera; `true` records them even
    /// without a detector (alerts posted to the API for it).
    pub enabled: Option<bool>,
    pub pre_s: Option<u32>,
    pub post_s: Option<u32>,
    pub max_s: Option<u32>,
}

/// One camera's clip settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSettings {
    pub pre_s: u32,
    pub post_s: u32,
    pub max_s: u32,
    pub ring_max_bytes: u64,
}

impl ClipsSection {
    /// The settings of a camera with `own` and `has_detector`, or `None`
    /// when it records no clips.
    pub fn for_camera(&self, own: Option<&CameraClip>, has_detector: bool) -> Option<ClipSettings> {
        let wanted = match own.and_then(|c| c.enabled) {
            Some(on) => on,
            None => has_detector || own.is_some(),
        };
        (self.enabled && wanted).then(|| ClipSettings {
            pre_s: own.and_then(|c| c.pre_s).unwrap_or(self.pre_s),
            post_s: own.and_then(|c| c.post_s).unwrap_or(self.post_s),
            max_s: own.and_then(|c| c.max_s).unwrap_or(self.max_s),
            ring_max_bytes: self.ring_max_bytes,
        })
    }

    /// Ranges of `[gateway.clips]`.
    pub fn validate(&self, p: &KeyPath, f: &mut Findings) {
        check_times(
            p,
            Some(self.pre_s),
            Some(self.post_s),
            Some(self.max_s),
            self,
            f,
        );
        if self.max_bytes < 64 << 20 {
            f.push(
                p.key("max_bytes"),
                "must be at least 67108864 (64 MiB): a few clips",
            );
        }
        if !(1 << 20..=1 << 30).contains(&self.ring_max_bytes) {
            f.push(
                p.key("ring_max_bytes"),
                "must be between 1048576 (1 MiB) and 1073741824 (1 GiB)",
            );
        }
    }
}

impl CameraClip {
    /// Ranges of a camera's `clip`, against the section's defaults.
    pub fn validate(&self, p: &KeyPath, section: &ClipsSection, f: &mut Findings) {
        check_times(p, self.pre_s, self.post_s, self.max_s, section, f);
    }
}

/// `pre_s` at most 60, `post_s` 1 to 600, `max_s` at least `pre_s + post_s`
/// and at most 1800, each as set or inherited.
fn check_times(
    p: &KeyPath,
    pre: Option<u32>,
    post: Option<u32>,
    max: Option<u32>,
    section: &ClipsSection,
    f: &mut Findings,
) {
    if let Some(pre) = pre
        && pre > 60
    {
        f.push(p.key("pre_s"), "must be at most 60 seconds");
    }
    if let Some(post) = post
        && !(1..=600).contains(&post)
    {
        f.push(p.key("post_s"), "must be between 1 and 600 seconds");
    }
    let (pre, post) = (pre.unwrap_or(section.pre_s), post.unwrap_or(section.post_s));
    let max_now = max.unwrap_or(section.max_s);
    if max.is_some() || pre + post > max_now {
        if max_now < pre + post {
            f.push(
                p.key("max_s"),
                format!("must be at least pre_s + post_s ({})", pre + post),
            );
        } else if max_now > 1800 {
            f.push(p.key("max_s"), "must be at most 1800 seconds");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_with_a_detector_or_their_own_clip_record() {
        let s = ClipsSection::default();
        assert_eq!(s.for_camera(None, false), None);
        let with = s.for_camera(None, true).expect("a detector records");
        assert_eq!((with.pre_s, with.post_s, with.max_s), (10, 20, 120));
        let own = CameraClip {
            pre_s: Some(5),
            ..Default::default()
        };
        assert_eq!(s.for_camera(Some(&own), false).map(|c| c.pre_s), Some(5));
        let off = CameraClip {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(s.for_camera(Some(&off), true), None);
        let none = ClipsSection {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(none.for_camera(None, true), None);
    }

    #[test]
    fn ranges_are_checked_with_inherited_values() {
        let s = ClipsSection::default();
        let mut f = Findings::default();
        let c = CameraClip {
            post_s: Some(200),
            ..Default::default()
        };
        c.validate(&KeyPath::root().key("clip"), &s, &mut f);
        assert_eq!(f.0.len(), 1, "{:?}", f.0);
        assert!(format!("{:?}", f.0).contains("max_s"));
        let mut f = Findings::default();
        ClipsSection {
            pre_s: 61,
            max_bytes: 1,
            ..Default::default()
        }
        .validate(&KeyPath::root().key("clips"), &mut f);
        assert_eq!(f.0.len(), 2, "{:?}", f.0);
    }
}
