//! Low-resolution RGBA fields for the animated layers. Clouds, fog and smoke are
//! soft, so they are evaluated on a grid every `step` pixels (the costly fractal
//! noise runs on a fraction of the pixels) and sampled back bilinearly at full
//! resolution while compositing. The buffer is reused from frame to frame.

/// Premultiplied colour and coverage: `[r·a, g·a, b·a, a]`.
pub(crate) type Rgba = [f32; 4];

#[derive(Debug, Default)]
pub(crate) struct Coarse {
    x0: f32,
    y0: f32,
    step: f32,
    cols: usize,
    rows: usize,
    data: Vec<Rgba>,
    /// Per output column: left grid column and horizontal weight (reused).
    columns: Vec<(u32, f32)>,
}

impl Coarse {
    /// Evaluate `f` on a grid covering pixels `[x0, x1) × [y0, y1)` every `step` pixels.
    pub(crate) fn fill(
        &mut self,
        (x0, y0, x1, y1): (usize, usize, usize, usize),
        step: usize,
        mut f: impl FnMut(f32, f32) -> Rgba,
    ) {
        let step = step.max(1);
        self.x0 = x0 as f32;
        self.y0 = y0 as f32;
        self.step = step as f32;
        self.cols = (x1.saturating_sub(x0)).div_ceil(step) + 1;
        self.rows = (y1.saturating_sub(y0)).div_ceil(step) + 1;
        self.data.clear();
        self.data.reserve(self.cols * self.rows);
        for j in 0..self.rows {
            let py = self.y0 + (j * step) as f32 + 0.5;
            for i in 0..self.cols {
                let px = self.x0 + (i * step) as f32 + 0.5;
                self.data.push(f(px, py));
            }
        }
    }

    /// Composite the field over `frame` (row-major, `width` wide) inside the
    /// rectangle it was filled for, at pixels where `visible(index)` holds:
    /// `p = p·(1 − a) + c`. Calls `covered(x, y, a, change)` for each pixel drawn, where
    /// `change` is how far the pixel moved on the displayed 0..1 scale (the largest of its three
    /// channels): a
    /// layer can be opaque enough yet invisible against a backdrop of its own colour.
    pub(crate) fn blend(
        &mut self,
        (x0, y0, x1, y1): (usize, usize, usize, usize),
        frame: &mut [[f32; 3]],
        width: usize,
        visible: impl Fn(usize) -> bool,
        mut covered: impl FnMut(usize, usize, f32, f32),
    ) {
        if self.cols < 2 || self.rows < 2 {
            return;
        }
        let inv = 1.0 / self.step;
        self.columns.clear();
        for x in x0..x1 {
            let fx = ((x as f32 - self.x0) * inv).max(0.0);
            let i = (fx as usize).min(self.cols - 2);
            self.columns.push((i as u32, (fx - i as f32).min(1.0)));
        }
        for y in y0..y1 {
            let fy = ((y as f32 - self.y0) * inv).max(0.0);
            let j = (fy as usize).min(self.rows - 2);
            let ty = (fy - j as f32).min(1.0);
            let top = &self.data[j * self.cols..(j + 1) * self.cols];
            let bottom = &self.data[(j + 1) * self.cols..(j + 2) * self.cols];
            let row = y * width;
            for (x, &(i, tx)) in (x0..x1).zip(&self.columns) {
                let i = i as usize;
                let (a, b, c, d) = (top[i], top[i + 1], bottom[i], bottom[i + 1]);
                if a[3] + b[3] + c[3] + d[3] <= 0.0 {
                    continue;
                }
                let idx = row + x;
                if !visible(idx) {
                    continue;
                }
                let mut s = [0.0f32; 4];
                for k in 0..4 {
                    let t = a[k] + (b[k] - a[k]) * tx;
                    let u = c[k] + (d[k] - c[k]) * tx;
                    s[k] = t + (u - t) * ty;
                }
                if s[3] <= 0.002 {
                    continue;
                }
                let p = &mut frame[idx];
                let keep = 1.0 - s[3];
                let before = *p;
                *p = [p[0] * keep + s[0], p[1] * keep + s[1], p[2] * keep + s[2]];
                // On the displayed scale: a sky brighter than white stays white under a veil.
                let shown = |v: f32| v.clamp(0.0, 1.0);
                let change = (0..3)
                    .map(|k| (shown(p[k]) - shown(before[k])).abs())
                    .fold(0.0f32, f32::max);
                covered(x, y, s[3], change);
            }
        }
    }

    /// Bilinear sample at pixel (`x`, `y`), which must lie inside the filled rectangle.
    #[cfg(test)]
    pub(crate) fn sample(&self, x: usize, y: usize) -> Rgba {
        let fx = ((x as f32 - self.x0) / self.step).max(0.0);
        let fy = ((y as f32 - self.y0) / self.step).max(0.0);
        let i = (fx as usize).min(self.cols.saturating_sub(2));
        let j = (fy as usize).min(self.rows.saturating_sub(2));
        let tx = (fx - i as f32).min(1.0);
        let ty = (fy - j as f32).min(1.0);
        let i1 = (i + 1).min(self.cols - 1);
        let j1 = (j + 1).min(self.rows - 1);
        let a = self.data[j * self.cols + i];
        let b = self.data[j * self.cols + i1];
        let c = self.data[j1 * self.cols + i];
        let d = self.data[j1 * self.cols + i1];
        let mut out = [0.0; 4];
        for k in 0..4 {
            let top = a[k] + (b[k] - a[k]) * tx;
            let bottom = c[k] + (d[k] - c[k]) * tx;
            out[k] = top + (bottom - top) * ty;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_reproduces_a_linear_ramp() {
        let mut c = Coarse::default();
        c.fill((0, 0, 64, 32), 4, |x, _| [x, 0.0, 0.0, 1.0]);
        for x in 0..60 {
            let v = c.sample(x, 10)[0];
            assert!((v - (x as f32 + 0.5)).abs() < 1e-3, "{x}: {v}");
        }
    }
}
