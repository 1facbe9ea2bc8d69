//! What lookout's gateway (`lookout`) and command center (`lookout-center`)
//! share, with neither GStreamer nor ONNX Runtime: the relay that carries
//! alerts and video over QUIC ([`relay`]: uplink, outbox, wire streams,
//! TLS), an alert's life ([`alert`]), the access units video travels in
//! ([`unit`]), SQLite files opened the durable way ([`durable`]), the HTTP
//! server both APIs run on ([`http`]) with its guard ([`auth`],
//! [`sessions`]), configuration pieces ([`config`]), logging, metrics,
//! shutdown and thread accounting.

pub mod alert;
pub mod auth;
pub mod backoff;
pub mod certs;
pub mod clock;
pub mod config;
pub mod durable;
pub mod export;
pub mod frame;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod relay;
pub mod sessions;
pub mod shutdown;
pub mod sync;
pub mod threads;
pub mod unit;
