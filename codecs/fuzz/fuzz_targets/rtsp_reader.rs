//! libFuzzer entry for [`lookout_fuzz::targets::rtsp_reader`]: the gateway's RTSP guard
//! reading a hostile camera.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lookout_fuzz::targets::rtsp_reader(input));
