//! An alert's life in the gateway: the state machine, hub, journal contract,
//! record, model identity and snapshots are `lookout_core::alert` (the
//! center stores the same record); alerts from outside the video path
//! (`POST /api/alerts`) are [`external`]; evidence clips around alerts are
//! [`clips`].

pub use lookout_core::alert::*;

pub mod clips;
pub mod external;
