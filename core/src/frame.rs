//! A decoded picture as the detectors and alert snapshots take it.

/// A decoded picture, RGB8, rows packed.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    /// Pixels per row, > 0.
    pub width: u32,
    /// Rows, > 0.
    pub height: u32,
    /// `width * height * 3` bytes: R, G, B per pixel, rows top to bottom
    /// with no padding ([`RgbFrame::new`] checks the length).
    pub data: Vec<u8>,
}

impl RgbFrame {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Option<RgbFrame> {
        (data.len() == width as usize * height as usize * 3 && width > 0 && height > 0).then_some(
            RgbFrame {
                width,
                height,
                data,
            },
        )
    }
}
