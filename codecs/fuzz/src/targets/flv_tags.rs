//! The FLV video tag reader the gateway's RTMP listener runs on every pushed video
//! message, against what a hostile or broken publisher could send: arbitrary bytes as
//! one tag body. It must never panic; a frame's NAL units must lie inside the body and
//! come back out of the Annex-B writer with a start code before each; a configuration
//! record's parameter sets must stay within the limit.

use bytes::Bytes;
use lookout_codecs::flv::{self, MAX_NALUS, MAX_PARAMETER_SETS, VideoTag};

/// Runs one input; panics on a finding.
pub fn flv_tags(input: &[u8]) {
    let body = Bytes::copy_from_slice(input);
    match flv::parse_video_tag(&body) {
        Ok(VideoTag::Config {
            length_size,
            parameter_sets,
            ..
        }) => {
            assert!(matches!(length_size, 1 | 2 | 4));
            assert!(parameter_sets.len() <= MAX_PARAMETER_SETS);
            assert!(parameter_sets.iter().all(|p| !p.is_empty()));
        }
        Ok(VideoTag::Frame { data, .. }) => {
            assert!(data.len() <= input.len());
            for size in [1, 2, 4] {
                if let Ok(nalus) = flv::split_nalus(&data, size) {
                    assert!(nalus.len() <= MAX_NALUS);
                    let total: usize = nalus.iter().map(|n| n.len() + size).sum();
                    assert!(total <= data.len());
                    let au = flv::annex_b(&[], &nalus);
                    assert_eq!(au.len(), nalus.iter().map(|n| n.len() + 4).sum::<usize>());
                    if let Some(first) = nalus.first() {
                        assert_eq!(&au[..4], &[0, 0, 0, 1]);
                        assert_eq!(&au[4..4 + first.len()], &first[..]);
                    }
                }
            }
        }
        Ok(VideoTag::EndOfSequence | VideoTag::Ignored(_)) | Err(_) => {}
    }
}
