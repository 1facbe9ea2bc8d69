//! An alert's life, from detections to the record every side stores: the
//! per-camera state machine that turns detections into raise / update /
//! clear ([`machine`]), the hub that numbers, journals and announces alert
//! events ([`hub`]; its [`hub::Journal`] is the outbox, so an event is
//! durable before anyone hears of it), the model identity every alert names
//! ([`identity`]) and its JPEG snapshot ([`snapshot`]). Alerts from outside
//! the video path (`POST /api/alerts`) join in the gateway's
//! `alert::external`.

pub mod hub;
pub mod identity;
pub mod machine;
pub mod snapshot;

use serde::Serialize;

/// One thing a detector saw in one frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The class name, from the model's label list (by output index).
    pub label: String,
    /// Confidence, normally 0..1: the class score (classification, after a
    /// softmax when configured; YOLO's class score), both filtered by the
    /// detector's threshold, or the mean score of the class's pixels
    /// (segmentation; 1 for a map of class ids).
    pub score: f32,
    /// `[x, y, w, h]` in frame pixels (detection and segmentation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
    /// Share of the frame the region covers (segmentation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<f32>,
}
