//! Renders what a person should look at before trusting the scenes: a contact
//! sheet of labelled stills, a 1280×720 tower frame with smoke and a drone frame
//! with flood (as PNGs), and the time per 720p frame for every scene kind.
//!
//! `cargo run --release -p lookout-scene --example preview -- [OUT_DIR] [FIRST_SEED]`

use std::path::PathBuf;
use std::time::Instant;

use lookout_scene::{
    Confusers, EventClass, EventSpec, Lighting, Scene, SceneKind, SceneSpec, contact_sheet,
    i420_len, rgb_to_i420, write_png,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "/tmp".into()));
    let first_seed: u64 = match args.next() {
        Some(s) => s.parse()?,
        None => 1,
    };
    std::fs::create_dir_all(&out)?;

    let t0 = Instant::now();
    contact_sheet(&out.join("contact.png"), first_seed, 144)?;
    println!(
        "contact sheet: {:?} ({:.1} s)",
        out.join("contact.png"),
        t0.elapsed().as_secs_f64()
    );

    let (w, h) = (1280, 720);
    let stills = [
        (
            "tower_smoke_720p.png",
            SceneKind::Tower,
            EventClass::Smoke,
            90.0,
        ),
        (
            "drone_flood_720p.png",
            SceneKind::Drone,
            EventClass::Flood,
            40.0,
        ),
        (
            "bodycam_flood_720p.png",
            SceneKind::Bodycam,
            EventClass::Flood,
            30.0,
        ),
        (
            "fixed_smoke_720p.png",
            SceneKind::Fixed,
            EventClass::Smoke,
            120.0,
        ),
    ];
    for (name, kind, class, t) in stills {
        let spec = SceneSpec {
            confusers: Confusers {
                clouds: true,
                ..Confusers::default()
            },
            ..SceneSpec::new(kind, Lighting::Day, first_seed, w, h)
        };
        let mut scene = Scene::new(spec, vec![EventSpec::new(class, 2.0)])?;
        let mut rgb = vec![0; scene.frame_len()];
        let labels = scene.render_rgb(t, &mut rgb)?;
        write_png(&out.join(name), &rgb, w, h)?;
        println!("{name}: {:?}", labels.objects);
    }

    // Time per frame: build once, then render 50 frames of a 25 fps clip with
    // the event running, plus the I420 conversion the encoder needs.
    println!("kind     build_ms  render_ms(mean of 50)  i420_ms");
    for kind in SceneKind::ALL {
        let spec = SceneSpec {
            confusers: Confusers {
                clouds: true,
                low_cloud: true,
                fog: true,
                glare: true,
                wet_road: false,
            },
            ..SceneSpec::new(kind, Lighting::Day, first_seed, w, h)
        };
        let events = vec![
            EventSpec::new(EventClass::Smoke, 0.0),
            EventSpec::new(EventClass::Flood, 0.0),
        ];
        let b0 = Instant::now();
        let mut scene = Scene::new(spec, events)?;
        let build = b0.elapsed();
        let mut rgb = vec![0; scene.frame_len()];
        let mut yuv = vec![0; i420_len(w, h)];
        let frames = 50;
        let r0 = Instant::now();
        for f in 0..frames {
            scene.render_rgb(30.0 + f as f64 / 25.0, &mut rgb)?;
        }
        let render = r0.elapsed() / frames;
        let y0 = Instant::now();
        for _ in 0..frames {
            rgb_to_i420(&rgb, w, h, &mut yuv)?;
        }
        let conv = y0.elapsed() / frames;
        println!(
            "{:8} {:8.0}  {:21.1}  {:7.1}",
            kind.name(),
            build.as_secs_f64() * 1e3,
            render.as_secs_f64() * 1e3,
            conv.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
