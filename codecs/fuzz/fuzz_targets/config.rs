//! libFuzzer entry for [`lookout_fuzz::targets::config`]: the gateway's and the center's
//! TOML configuration, parsed, validated and located.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::config(input));
