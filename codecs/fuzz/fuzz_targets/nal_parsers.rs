//! libFuzzer entry for [`lookout_fuzz::targets::nal_parsers`]: access units, SPS, SEI and
//! capture stamps as a camera sends them.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::nal_parsers(input));
