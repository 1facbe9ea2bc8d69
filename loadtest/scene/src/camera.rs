//! The pinhole camera every scene is seen through: a level camera whose image
//! plane may be shifted up or down (a "shift lens"), so one formula serves a
//! street-level body camera (horizon mid-frame), a tower (horizon high) and a
//! drone looking down on a valley (horizon above the top edge). Verticals stay
//! vertical, which keeps plume and facade geometry simple.

/// Where a pixel's ray meets the ground plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroundHit {
    /// Metres right of the camera.
    pub(crate) u: f32,
    /// Metres ahead of the camera.
    pub(crate) z: f32,
    /// Metres of ground covered by one pixel (the larger of both axes); textures
    /// finer than this are faded out instead of aliasing.
    pub(crate) footprint: f32,
}

#[derive(Debug, Clone)]
pub(crate) struct Camera {
    pub(crate) width: f32,
    pub(crate) height: f32,
    /// Focal length in pixels.
    pub(crate) focal: f32,
    pub(crate) cx: f32,
    /// Image row of the horizon; may lie outside the frame.
    pub(crate) horizon_y: f32,
    /// Camera height above the ground plane, metres.
    pub(crate) elevation_m: f32,
}

impl Camera {
    pub(crate) fn ground(&self, x: f32, y: f32) -> Option<GroundHit> {
        let dy = y - self.horizon_y;
        if dy <= 0.05 {
            return None;
        }
        let z = self.elevation_m * self.focal / dy;
        let u = (x - self.cx) * z / self.focal;
        let across = z / self.focal;
        let along = z * z / (self.elevation_m * self.focal);
        Some(GroundHit {
            u,
            z,
            footprint: across.max(along),
        })
    }

    /// Angle above the horizon of the ray through row `y`, radians.
    pub(crate) fn elevation(&self, y: f32) -> f32 {
        ((self.horizon_y - y) / self.focal).atan()
    }

    /// Angle right of the camera axis of the ray through column `x`, radians.
    pub(crate) fn azimuth(&self, x: f32) -> f32 {
        ((x - self.cx) / self.focal).atan()
    }

    /// Image position of a world point `u` right, `z` ahead, `h` above ground.
    pub(crate) fn project(&self, u: f32, z: f32, h: f32) -> (f32, f32) {
        (
            self.cx + u * self.focal / z,
            self.horizon_y + (self.elevation_m - h) * self.focal / z,
        )
    }

    /// Pixels per metre at distance `z`.
    pub(crate) fn pixels_per_m(&self, z: f32) -> f32 {
        self.focal / z
    }
}
