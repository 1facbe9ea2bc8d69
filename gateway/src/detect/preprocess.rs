//! From a decoded RGB frame to one slot of a model's input tensor, in one
//! pass: resize (stretch, or letterbox with the YOLO pad value 114), channel
//! order, scale, mean/std and layout all come from the `[[detector]]` entry.
//! Bilinear sampling writes straight into the tensor: no intermediate image.

use crate::config::{ChannelOrder, Layout, ModelInput};

pub use lookout_core::frame::RgbFrame;

/// How frame coordinates map into the model's input: `input = frame * scale
/// + pad`. Needed to map boxes back to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Input pixels per frame pixel, horizontally.
    pub scale_x: f32,
    /// Input pixels per frame pixel, vertically (equal to `scale_x` when
    /// letterboxing).
    pub scale_y: f32,
    /// Input pixels of padding left of the picture (letterbox); 0 when
    /// stretching.
    pub pad_x: f32,
    /// Input pixels of padding above the picture (letterbox); 0 when
    /// stretching.
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

/// The size the picture takes inside the model input: the input itself when
/// stretching; the picture scaled to fit, aspect kept, when letterboxing.
/// The decoder scales straight to this size, so preprocessing is a copy.
pub fn picture_size(width: u32, height: u32, input: &ModelInput) -> (u32, u32) {
    if !input.letterbox {
        return (input.width, input.height);
    }
    let (fw, fh) = (width.max(1) as f64, height.max(1) as f64);
    let s = (input.width as f64 / fw).min(input.height as f64 / fh);
    (
        ((fw * s).round() as u32).clamp(1, input.width),
        ((fh * s).round() as u32).clamp(1, input.height),
    )
}

/// Writes `frame` into `out` (exactly [`slot_len`] values).
pub fn fill(frame: &RgbFrame, input: &ModelInput, out: &mut [f32]) -> Placement {
    let (iw, ih) = (input.width as usize, input.height as usize);
    debug_assert_eq!(out.len(), iw * ih * 3);
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    let (nw, nh) = picture_size(frame.width, frame.height, input);
    let (nw, nh) = (nw as f32, nh as f32);
    let placement = if input.letterbox {
        let s = (iw as f32 / fw).min(ih as f32 / fh);
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
    if (frame.width as usize, frame.height as usize) == (iw, ih) && !input.letterbox {
        // Already at the input size (scaled by the decoder): convert only.
        convert(&frame.data, out, input.layout, order, mul, add);
        return placement;
    }
    let pad = f32::from(LETTERBOX_PAD);
    let src = &frame.data;
    let stride = frame.width as usize * 3;
    // Sampling positions per column and per row, computed once per frame:
    // (first source offset, second source offset, weight of the second),
    // or None outside the picture (letterbox padding).
    // Output pixels `pad .. pad + inner` show the picture, resized to
    // `inner` pixels as OpenCV's INTER_LINEAR would (centres aligned,
    // coordinates clamped at the edges); the rest is padding.
    let axis = |n: usize, pad_px: f32, inner: f32, len: u32, step: usize| {
        let max = len as usize - 1;
        let scale = inner / len as f32;
        (0..n)
            .map(|i| {
                let pos = i as f32 - pad_px;
                if pos < 0.0 || pos >= inner {
                    return None;
                }
                let s = ((pos + 0.5) / scale - 0.5).max(0.0);
                let f = s.floor();
                let a = (f as usize).min(max);
                let b = (a + 1).min(max);
                Some((a * step, b * step, s - f))
            })
            .collect::<Vec<_>>()
    };
    let cols = axis(iw, placement.pad_x, nw, frame.width, 3);
    let rows = axis(ih, placement.pad_y, nh, frame.height, stride);
    let padded = [
        pad * mul[0] + add[0],
        pad * mul[1] + add[1],
        pad * mul[2] + add[2],
    ];
    // Separable bilinear: per output row, blend the two source rows into
    // `line` (contiguous, vectorises), then pick and blend columns from it.
    let mut line = vec![0f32; stride];
    let mut px = vec![[0f32; 3]; iw];
    for (y, row) in rows.iter().enumerate() {
        match row {
            Some((r0, r1, wy)) => {
                let (a, b) = (&src[*r0..*r0 + stride], &src[*r1..*r1 + stride]);
                for ((l, &p), &q) in line.iter_mut().zip(a).zip(b) {
                    let (p, q) = (f32::from(p), f32::from(q));
                    *l = p + (q - p) * wy;
                }
                for (x, col) in cols.iter().enumerate() {
                    px[x] = match col {
                        Some((c0, c1, wx)) => {
                            let (u, v) = (&line[*c0..*c0 + 3], &line[*c1..*c1 + 3]);
                            let s = [
                                u[0] + (v[0] - u[0]) * wx,
                                u[1] + (v[1] - u[1]) * wx,
                                u[2] + (v[2] - u[2]) * wx,
                            ];
                            [
                                s[order[0]] * mul[0] + add[0],
                                s[order[1]] * mul[1] + add[1],
                                s[order[2]] * mul[2] + add[2],
                            ]
                        }
                        None => padded,
                    };
                }
            }
            None => px.fill(padded),
        }
        match input.layout {
            Layout::Nchw => {
                let o = y * iw;
                for (k, p) in px.iter().enumerate() {
                    out[o + k] = p[0];
                }
                for (k, p) in px.iter().enumerate() {
                    out[plane + o + k] = p[1];
                }
                for (k, p) in px.iter().enumerate() {
                    out[2 * plane + o + k] = p[2];
                }
            }
            Layout::Nhwc => {
                for (k, p) in px.iter().enumerate() {
                    out[(y * iw + k) * 3..(y * iw + k) * 3 + 3].copy_from_slice(p);
                }
            }
        }
    }
    placement
}

/// Per-channel affine conversion of a frame already at the input size:
/// `out = pixel[order[c]] * mul[c] + add[c]`, planar or interleaved. On x86-64
/// with AVX2 the same code is compiled for it and chosen at run time (about a
/// third faster here: the whole batch is written on the preprocessing thread,
/// which on a small machine shares its cores with ONNX Runtime's); the values
/// are identical (no fused multiply-add either way).
fn convert(
    px: &[u8],
    out: &mut [f32],
    layout: Layout,
    order: [usize; 3],
    mul: [f32; 3],
    add: [f32; 3],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just found to support AVX2, the one feature
        // `convert_avx2` is compiled for.
        unsafe { convert_avx2(px, out, layout, order, mul, add) };
        return;
    }
    convert_any(px, out, layout, order, mul, add);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn convert_avx2(
    px: &[u8],
    out: &mut [f32],
    layout: Layout,
    order: [usize; 3],
    mul: [f32; 3],
    add: [f32; 3],
) {
    convert_any(px, out, layout, order, mul, add);
}

#[inline(always)]
fn convert_any(
    px: &[u8],
    out: &mut [f32],
    layout: Layout,
    order: [usize; 3],
    mul: [f32; 3],
    add: [f32; 3],
) {
    let px = px.chunks_exact(3);
    match layout {
        Layout::Nchw => {
            let plane = out.len() / 3;
            let (p0, rest) = out.split_at_mut(plane);
            let (p1, p2) = rest.split_at_mut(plane);
            for (((a, b), c), s) in p0.iter_mut().zip(p1.iter_mut()).zip(p2.iter_mut()).zip(px) {
                *a = f32::from(s[order[0]]) * mul[0] + add[0];
                *b = f32::from(s[order[1]]) * mul[1] + add[1];
                *c = f32::from(s[order[2]]) * mul[2] + add[2];
            }
        }
        Layout::Nhwc => {
            for (o, s) in out.chunks_exact_mut(3).zip(px) {
                for k in 0..3 {
                    o[k] = f32::from(s[order[k]]) * mul[k] + add[k];
                }
            }
        }
    }
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
    fn the_cpu_specific_conversion_matches_the_portable_one_exactly() {
        // A frame at the input size takes `convert`, which picks the AVX2
        // build where the CPU has it: every value must equal the portable
        // build's, in both layouts and channel orders.
        let data: Vec<u8> = (0..37 * 23 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let (mul, add) = ([0.017, 0.0175, 0.0174], [-2.1, -2.03, -1.8]);
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for order in [[0, 1, 2], [2, 1, 0]] {
                let mut chosen = vec![0.0; data.len()];
                let mut portable = vec![1.0; data.len()];
                convert(&data, &mut chosen, layout, order, mul, add);
                convert_any(&data, &mut portable, layout, order, mul, add);
                assert_eq!(chosen, portable, "{layout:?} {order:?}");
            }
        }
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
    fn frame_at_input_size_is_converted_pixel_by_pixel() {
        // 13 x 7, with values that differ from pixel to pixel and channel to
        // channel, so a swapped plane or an off-by-one shows.
        let (w, h) = (13u32, 7u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let f = RgbFrame::new(w, h, data.clone()).expect("frame");
        for channels in [ChannelOrder::Rgb, ChannelOrder::Bgr] {
            let mut inp = input(w, h, false);
            inp.channels = channels;
            inp.mean = [0.1, 0.2, 0.3];
            inp.std = [0.5, 0.25, 2.0];
            let order = match channels {
                ChannelOrder::Rgb => [0, 1, 2],
                ChannelOrder::Bgr => [2, 1, 0],
            };
            let mut t = vec![f32::NAN; slot_len(&inp)];
            fill(&f, &inp, &mut t);
            let plane = (w * h) as usize;
            for k in 0..3 {
                for i in 0..plane {
                    let want =
                        (f32::from(data[3 * i + order[k]]) / 255.0 - inp.mean[k]) / inp.std[k];
                    let got = t[k * plane + i];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "plane {k} pixel {i}: {got} vs {want}"
                    );
                }
            }
        }
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
