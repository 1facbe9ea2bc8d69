//! From a decoded RGB frame to one slot of a model's input tensor, in one
//! pass: resize (stretch, or letterbox with the YOLO pad value 114), channel
//! order, scale, mean/std and layout all come from the `[[detector]]` entry.
//! Bilinear sampling writes straight into the tensor: no intermediate image.

use crate::config::{ChannelOrder, Layout, ModelInput};

/// A decoded picture, RGB8, rows packed.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
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

/// How frame coordinates map into the model's input: `input = frame * scale
/// + pad`. Needed to map boxes back to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Placement {
    /// Maps a box `[x, y, w, h]` in input pixels back to frame pixels.
    pub fn to_frame(&self, b: [f32; 4]) -> [f32; 4] {
        [
            (b[0] - self.pad_x) / self.scale_x,
            (b[1] - self.pad_y) / self.scale_y,
            b[2] / self.scale_x,
            b[3] / self.scale_y,
        ]
    }
}

/// YOLO's letterbox fill (114 of 255).
pub const LETTERBOX_PAD: u8 = 114;

/// Number of f32 values one frame takes in the tensor.
pub fn slot_len(input: &ModelInput) -> usize {
    input.width as usize * input.height as usize * 3
}

/// Writes `frame` into `out` (exactly [`slot_len`] values).
pub fn fill(frame: &RgbFrame, input: &ModelInput, out: &mut [f32]) -> Placement {
    let (iw, ih) = (input.width as usize, input.height as usize);
    debug_assert_eq!(out.len(), iw * ih * 3);
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    let placement = if input.letterbox {
        let s = (iw as f32 / fw).min(ih as f32 / fh);
        let (nw, nh) = ((fw * s).round(), (fh * s).round());
        Placement {
            scale_x: s,
            scale_y: s,
            pad_x: ((iw as f32 - nw) / 2.0).floor(),
            pad_y: ((ih as f32 - nh) / 2.0).floor(),
        }
    } else {
        Placement {
            scale_x: iw as f32 / fw,
            scale_y: ih as f32 / fh,
            pad_x: 0.0,
            pad_y: 0.0,
        }
    };
    // Per-channel affine: value = (pixel / scale - mean) / std.
    let order: [usize; 3] = match input.channels {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let mut mul = [0f32; 3];
    let mut add = [0f32; 3];
    for c in 0..3 {
        mul[c] = 1.0 / (input.scale * input.std[c]);
        add[c] = -input.mean[c] / input.std[c];
    }
    let plane = iw * ih;
    let pad = f32::from(LETTERBOX_PAD);
    let src = &frame.data;
    let stride = frame.width as usize * 3;
    let (maxx, maxy) = (frame.width as usize - 1, frame.height as usize - 1);
    for y in 0..ih {
        // Sample at pixel centres.
        let sy = (y as f32 + 0.5 - placement.pad_y) / placement.scale_y - 0.5;
        let inside_y = sy > -1.0 && sy < fh;
        let y0 = sy.floor().clamp(0.0, maxy as f32) as usize;
        let y1 = (y0 + 1).min(maxy);
        let wy = (sy - sy.floor()).clamp(0.0, 1.0);
        for x in 0..iw {
            let sx = (x as f32 + 0.5 - placement.pad_x) / placement.scale_x - 0.5;
            let inside = inside_y && sx > -1.0 && sx < fw;
            let mut px = [pad; 3];
            if inside {
                let x0 = sx.floor().clamp(0.0, maxx as f32) as usize;
                let x1 = (x0 + 1).min(maxx);
                let wx = (sx - sx.floor()).clamp(0.0, 1.0);
                let (a, b) = (y0 * stride, y1 * stride);
                for (c, p) in px.iter_mut().enumerate() {
                    let p00 = f32::from(src[a + x0 * 3 + c]);
                    let p01 = f32::from(src[a + x1 * 3 + c]);
                    let p10 = f32::from(src[b + x0 * 3 + c]);
                    let p11 = f32::from(src[b + x1 * 3 + c]);
                    let top = p00 + (p01 - p00) * wx;
                    let bottom = p10 + (p11 - p10) * wx;
                    *p = top + (bottom - top) * wy;
                }
            }
            for (slot, &c) in order.iter().enumerate() {
                let v = px[c] * mul[slot] + add[slot];
                match input.layout {
                    Layout::Nchw => out[slot * plane + y * iw + x] = v,
                    Layout::Nhwc => out[(y * iw + x) * 3 + slot] = v,
                }
            }
        }
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(w: u32, h: u32, letterbox: bool) -> ModelInput {
        ModelInput {
            width: w,
            height: h,
            layout: Layout::Nchw,
            channels: ChannelOrder::Rgb,
            scale: 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            letterbox,
        }
    }

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> RgbFrame {
        let data = (0..w * h).flat_map(|_| rgb).collect();
        RgbFrame::new(w, h, data).expect("frame")
    }

    #[test]
    fn solid_colour_maps_to_scaled_planes() {
        let f = solid(64, 48, [255, 128, 0]);
        let inp = input(16, 16, false);
        let mut t = vec![0.0; slot_len(&inp)];
        fill(&f, &inp, &mut t);
        assert!(t[..256].iter().all(|v| (v - 1.0).abs() < 1e-5));
        assert!(t[256..512].iter().all(|v| (v - 128.0 / 255.0).abs() < 1e-5));
        assert!(t[512..].iter().all(|v| v.abs() < 1e-5));
    }

    #[test]
    fn bgr_and_nhwc_and_normalisation() {
        let f = solid(8, 8, [10, 20, 30]);
        let mut inp = input(4, 4, false);
        inp.channels = ChannelOrder::Bgr;
        inp.layout = Layout::Nhwc;
        inp.scale = 1.0;
        inp.mean = [30.0, 20.0, 10.0];
        inp.std = [2.0, 2.0, 2.0];
        let mut t = vec![9.0; slot_len(&inp)];
        fill(&f, &inp, &mut t);
        assert!(t.iter().all(|v| v.abs() < 1e-4), "{t:?}");
    }

    #[test]
    fn letterbox_pads_with_114_and_maps_boxes_back() {
        let f = solid(200, 100, [255, 255, 255]);
        let inp = input(100, 100, true);
        let mut t = vec![0.0; slot_len(&inp)];
        let p = fill(&f, &inp, &mut t);
        assert_eq!((p.scale_x, p.pad_x, p.pad_y), (0.5, 0.0, 25.0));
        // Top rows are padding, the middle is the picture.
        assert!((t[0] - 114.0 / 255.0).abs() < 1e-5);
        assert!((t[50 * 100 + 50] - 1.0).abs() < 1e-5);
        let b = p.to_frame([10.0, 35.0, 20.0, 10.0]);
        assert_eq!(b, [20.0, 20.0, 40.0, 20.0]);
    }
}
