//! libFuzzer entry for [`lookout_fuzz::targets::flv_tags`]: FLV video tag bodies as a
//! publisher pushes them over RTMP.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::flv_tags(input));
