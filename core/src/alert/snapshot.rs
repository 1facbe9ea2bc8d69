//! The picture that goes with an alert: the work frame that triggered it,
//! with the detection boxes drawn (or, for a whole-frame classification, a
//! frame border in the label's colour), as a JPEG.

use image::codecs::jpeg::JpegEncoder;

use crate::frame::RgbFrame;

/// JPEG quality: sharp enough to read smoke edges, ~30–60 KB at 640×360.
const QUALITY: u8 = 80;

/// A stable, distinguishable colour per label.
pub fn label_colour(label: &str) -> [u8; 3] {
    match label {
        "smoke" => [255, 140, 0],
        "flood" => [0, 160, 255],
        "fire" => [255, 40, 40],
        _ => {
            // Hash the name onto a bright palette.
            let h = label
                .bytes()
                .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b.into()));
            const PALETTE: [[u8; 3]; 6] = [
                [255, 0, 200],
                [0, 230, 120],
                [255, 230, 0],
                [150, 90, 255],
                [0, 255, 255],
                [255, 120, 120],
            ];
            PALETTE[h as usize % PALETTE.len()]
        }
    }
}

/// Draws `boxes` (`[x, y, w, h]` in the frame's pixels) with a 3-pixel
/// outline; with no boxes, outlines the whole frame.
pub fn draw(frame: &mut RgbFrame, boxes: &[[f32; 4]], colour: [u8; 3]) {
    let (w, h) = (frame.width as i64, frame.height as i64);
    let full = [[0.0, 0.0, w as f32, h as f32]];
    let boxes = if boxes.is_empty() { &full[..] } else { boxes };
    let thick = 3;
    for b in boxes {
        let x0 = (b[0].floor() as i64).clamp(0, w - 1);
        let y0 = (b[1].floor() as i64).clamp(0, h - 1);
        let x1 = ((b[0] + b[2]).ceil() as i64 - 1).clamp(0, w - 1);
        let y1 = ((b[1] + b[3]).ceil() as i64 - 1).clamp(0, h - 1);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let edge = x - x0 < thick || x1 - x < thick || y - y0 < thick || y1 - y < thick;
                if edge {
                    let i = ((y * w + x) * 3) as usize;
                    frame.data[i..i + 3].copy_from_slice(&colour);
                }
            }
        }
    }
}

/// Encodes an RGB frame as JPEG.
pub fn jpeg(frame: &RgbFrame) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::with_capacity(64 * 1024);
    JpegEncoder::new_with_quality(&mut out, QUALITY).encode(
        &frame.data,
        frame.width,
        frame.height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_outlined_and_clamped_and_the_result_is_a_jpeg() {
        let mut f = RgbFrame::new(32, 16, vec![0; 32 * 16 * 3]).expect("frame");
        draw(
            &mut f,
            &[[4.0, 4.0, 10.0, 8.0], [28.0, 10.0, 50.0, 50.0]],
            [255, 0, 0],
        );
        let px = |x: usize, y: usize| &f.data[(y * 32 + x) * 3..(y * 32 + x) * 3 + 3];
        assert_eq!(px(4, 4), [255, 0, 0]);
        assert_eq!(px(13, 11), [255, 0, 0]);
        // Inside the outline is untouched.
        assert_eq!(px(9, 8), [0, 0, 0]);
        // The box past the edge is clipped, not a panic.
        assert_eq!(px(31, 15), [255, 0, 0]);
        let j = jpeg(&f).expect("jpeg");
        assert_eq!(&j[..2], &[0xff, 0xd8]);
        let back = image::load_from_memory(&j).expect("decodes");
        assert_eq!((back.width(), back.height()), (32, 16));
    }

    #[test]
    fn no_boxes_means_a_border() {
        let mut f = RgbFrame::new(16, 16, vec![0; 16 * 16 * 3]).expect("frame");
        draw(&mut f, &[], [0, 0, 255]);
        assert_eq!(&f.data[0..3], &[0, 0, 255]);
        assert_eq!(&f.data[(8 * 16 + 8) * 3..(8 * 16 + 8) * 3 + 3], &[0, 0, 0]);
    }
}
