//! libFuzzer entry for [`lookout_fuzz::targets::relay_messages`]: every relay message
//! decoder, one payload at a time.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::relay_messages(input));
