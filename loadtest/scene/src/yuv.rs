//! RGB8 → I420 (planar Y, then U, then V; chroma subsampled 2×2), with BT.601
//! limited-range coefficients, which is what the x264 encoder in the fleet
//! simulator expects from `video/x-raw,format=I420`. Chroma is taken from the
//! average colour of each 2×2 block (an odd last row or column is paired with
//! itself).

use crate::scene::SceneError;

/// Bytes of an I420 frame: a full-size Y plane and two quarter-size chroma
/// planes (rounded up for odd sizes).
pub fn i420_len(width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
}

// BT.601 coefficients (Y' = 16 + 219·(0.299 R + 0.587 G + 0.114 B)/255, …) in
// 16.16 fixed point; `+ HALF >> 16` rounds to nearest.
const HALF: i32 = 1 << 15;

#[inline]
fn luma(r: i32, g: i32, b: i32) -> u8 {
    (((16_829 * r + 33_039 * g + 6_416 * b + HALF) >> 16) + 16) as u8
}

#[inline]
fn chroma_u(r: i32, g: i32, b: i32) -> u8 {
    (((-9_714 * r - 19_070 * g + 28_784 * b + HALF) >> 16) + 128).clamp(0, 255) as u8
}

#[inline]
fn chroma_v(r: i32, g: i32, b: i32) -> u8 {
    (((28_784 * r - 24_103 * g - 4_681 * b + HALF) >> 16) + 128).clamp(0, 255) as u8
}

/// Convert `rgb` (RGB8, `width × height × 3` bytes) into `out`
/// ([`i420_len`] bytes).
pub fn rgb_to_i420(rgb: &[u8], width: u32, height: u32, out: &mut [u8]) -> Result<(), SceneError> {
    let (w, h) = (width as usize, height as usize);
    if rgb.len() != w * h * 3 {
        return Err(SceneError::BufferSize {
            what: "RGB",
            width,
            height,
            need: w * h * 3,
            got: rgb.len(),
        });
    }
    let need = i420_len(width, height);
    if out.len() != need {
        return Err(SceneError::BufferSize {
            what: "I420",
            width,
            height,
            need,
            got: out.len(),
        });
    }
    let (y_plane, chroma) = out.split_at_mut(w * h);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    for (y_row, rgb_row) in y_plane.chunks_exact_mut(w).zip(rgb.chunks_exact(w * 3)) {
        for (yv, px) in y_row.iter_mut().zip(rgb_row.chunks_exact(3)) {
            *yv = luma(px[0].into(), px[1].into(), px[2].into());
        }
    }
    for cy in 0..ch {
        let top = &rgb[2 * cy * w * 3..(2 * cy + 1) * w * 3];
        // An odd last row pairs with itself.
        let bottom = if 2 * cy + 1 < h {
            &rgb[(2 * cy + 1) * w * 3..(2 * cy + 2) * w * 3]
        } else {
            top
        };
        let (u_row, v_row) = (
            &mut u_plane[cy * cw..(cy + 1) * cw],
            &mut v_plane[cy * cw..(cy + 1) * cw],
        );
        for cx in 0..cw {
            let x0 = 2 * cx * 3;
            // An odd last column pairs with itself.
            let x1 = if 2 * cx + 1 < w { x0 + 3 } else { x0 };
            let sum = |k: usize| {
                i32::from(top[x0 + k])
                    + i32::from(top[x1 + k])
                    + i32::from(bottom[x0 + k])
                    + i32::from(bottom[x1 + k])
            };
            let (r, g, b) = ((sum(0) + 2) >> 2, (sum(1) + 2) >> 2, (sum(2) + 2) >> 2);
            u_row[cx] = chroma_u(r, g, b);
            v_row[cx] = chroma_v(r, g, b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(r: u8, g: u8, b: u8, w: u32, h: u32) -> (u8, u8, u8) {
        let rgb: Vec<u8> = std::iter::repeat_n([r, g, b], (w * h) as usize)
            .flatten()
            .collect();
        let mut out = vec![0; i420_len(w, h)];
        rgb_to_i420(&rgb, w, h, &mut out).expect("sizes match");
        let y = out[0];
        let u = out[(w * h) as usize];
        let v = out[out.len() - 1];
        assert!(out[..(w * h) as usize].iter().all(|&p| p == y));
        (y, u, v)
    }

    #[test]
    fn known_colours_bt601_limited_range() {
        // Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in 0..=1), rounded:
        // red is 81.48 → 81, green 144.55 → 145.
        assert_eq!(solid(0, 0, 0, 4, 4), (16, 128, 128));
        assert_eq!(solid(255, 255, 255, 4, 4), (235, 128, 128));
        assert_eq!(solid(255, 0, 0, 4, 4), (81, 90, 240));
        assert_eq!(solid(0, 255, 0, 4, 4), (145, 54, 34));
        assert_eq!(solid(0, 0, 255, 4, 4), (41, 240, 110));
        assert_eq!(solid(128, 128, 128, 4, 4), (126, 128, 128));
    }

    #[test]
    fn odd_sizes_round_chroma_up() {
        assert_eq!(i420_len(5, 3), 15 + 2 * 3 * 2);
        assert_eq!(solid(255, 0, 0, 5, 3), (81, 90, 240));
    }

    #[test]
    fn wrong_buffer_sizes_are_errors() {
        let mut out = vec![0; i420_len(4, 4)];
        assert!(rgb_to_i420(&[0; 47], 4, 4, &mut out).is_err());
        assert!(rgb_to_i420(&[0; 48], 4, 4, &mut out[1..]).is_err());
    }

    #[test]
    fn chroma_averages_each_block() {
        // Left column red, right column blue: one chroma sample averages both.
        let rgb = [255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255];
        let mut out = vec![0; i420_len(2, 2)];
        rgb_to_i420(&rgb, 2, 2, &mut out).expect("sizes match");
        assert_eq!(&out[..4], &[81, 41, 81, 41]);
        // Average colour (128, 0, 128): Cb = 128 + 128·(0.439216 − 0.148223) = 165.2.
        assert_eq!(out[4], 165);
    }
}
