//! libFuzzer entry for [`lookout_fuzz::targets::relay_frames`]: the relay's streaming
//! decoder fed by a hostile peer.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::relay_frames(input));
