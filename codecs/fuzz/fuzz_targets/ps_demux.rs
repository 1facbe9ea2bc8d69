//! libFuzzer entry for [`lookout_fuzz::targets::ps_demux`].

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::ps_demux(input));
