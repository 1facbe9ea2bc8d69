//! One function per fuzz target. Each takes libFuzzer's raw input, must never panic on
//! it, and asserts the properties its parser promises (errors point inside the input,
//! what decodes encodes again, ...): a failed assertion is a finding like a crash.

mod config;
mod flv_tags;
mod nal_parsers;
mod ps_demux;
mod relay_frames;
mod relay_messages;
mod rtsp_reader;
mod sip_messages;

pub use config::config;
pub use flv_tags::flv_tags;
pub use nal_parsers::nal_parsers;
pub use ps_demux::ps_demux;
pub use relay_frames::relay_frames;
pub use relay_messages::relay_messages;
pub use rtsp_reader::rtsp_reader;
pub use sip_messages::sip_messages;
