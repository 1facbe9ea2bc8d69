//! libFuzzer entry for [`lookout_fuzz::targets::sip_messages`].

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::sip_messages(input));
