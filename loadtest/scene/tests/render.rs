//! End-to-end checks of the renderer through its public API: frames are a pure
//! function of the spec and the time, events are labelled where they really
//! change the picture, and they grow after onset. Small frames keep it fast.

use lookout_scene::{
    Confusers, EventClass, EventSpec, Lighting, Scene, SceneError, SceneKind, SceneSpec, i420_len,
    rgb_to_i420,
};

const W: u32 = 192;
const H: u32 = 108;

fn spec(kind: SceneKind, lighting: Lighting, seed: u64) -> SceneSpec {
    SceneSpec::new(kind, lighting, seed, W, H)
}

fn render(
    spec: SceneSpec,
    events: Vec<EventSpec>,
    t: f64,
) -> (Vec<u8>, lookout_scene::FrameLabels) {
    let mut scene = Scene::new(spec, events).expect("valid size");
    let mut rgb = vec![0; scene.frame_len()];
    let labels = scene.render_rgb(t, &mut rgb).expect("buffer fits");
    (rgb, labels)
}

fn every_confuser() -> Confusers {
    Confusers {
        clouds: true,
        low_cloud: true,
        fog: true,
        glare: true,
        wet_road: true,
    }
}

#[test]
fn same_seed_renders_identical_bytes() {
    for kind in SceneKind::ALL {
        for lighting in Lighting::ALL {
            let s = SceneSpec {
                confusers: every_confuser(),
                ..spec(kind, lighting, 42)
            };
            let events = vec![
                EventSpec::new(EventClass::Smoke, 1.0),
                EventSpec::new(EventClass::Flood, 2.0),
            ];
            let (a, la) = render(s, events.clone(), 30.0);
            let (b, lb) = render(s, events, 30.0);
            assert_eq!(a, b, "{kind:?} {lighting:?}");
            assert_eq!(la, lb);
        }
    }
}

#[test]
fn rendering_a_frame_twice_from_one_scene_is_stable() {
    let mut scene = Scene::new(spec(SceneKind::Bodycam, Lighting::Day, 5), vec![]).expect("valid");
    let mut a = vec![0; scene.frame_len()];
    let mut b = vec![0; scene.frame_len()];
    scene.render_rgb(3.0, &mut a).expect("fits");
    scene.render_rgb(7.0, &mut b).expect("fits");
    scene.render_rgb(3.0, &mut b).expect("fits");
    assert_eq!(a, b);
}

#[test]
fn different_seeds_differ() {
    for kind in SceneKind::ALL {
        let (a, _) = render(spec(kind, Lighting::Day, 1), vec![], 0.0);
        let (b, _) = render(spec(kind, Lighting::Day, 2), vec![], 0.0);
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            differing > a.len() / 4,
            "{kind:?}: only {differing} bytes differ"
        );
    }
}

#[test]
fn clouds_and_plumes_move_with_time() {
    let s = SceneSpec {
        confusers: Confusers {
            clouds: true,
            ..Confusers::default()
        },
        ..spec(SceneKind::Tower, Lighting::Day, 9)
    };
    let (a, _) = render(s, vec![], 0.0);
    let (b, _) = render(s, vec![], 20.0);
    assert_ne!(a, b);
}

#[test]
fn frame_sizes_are_checked() {
    assert!(matches!(
        Scene::new(
            SceneSpec::new(SceneKind::Tower, Lighting::Day, 1, 0, 720),
            vec![]
        ),
        Err(SceneError::FrameSize { .. })
    ));
    let mut scene = Scene::new(spec(SceneKind::Drone, Lighting::Haze, 1), vec![]).expect("valid");
    assert_eq!(scene.frame_len(), (W * H * 3) as usize);
    let mut short = vec![0; scene.frame_len() - 1];
    assert!(matches!(
        scene.render_rgb(0.0, &mut short),
        Err(SceneError::BufferSize { .. })
    ));
    // Odd sizes work too.
    let mut odd = Scene::new(
        SceneSpec::new(SceneKind::Fixed, Lighting::Dusk, 3, 101, 57),
        vec![],
    )
    .expect("valid");
    let mut rgb = vec![0; 101 * 57 * 3];
    odd.render_rgb(1.0, &mut rgb).expect("fits");
    let mut yuv = vec![0; i420_len(101, 57)];
    rgb_to_i420(&rgb, 101, 57, &mut yuv).expect("fits");
}

/// Mean absolute byte difference of two frames inside and outside a box.
fn diff_inside_outside(a: &[u8], b: &[u8], bbox: [u32; 4]) -> (f64, f64) {
    let [bx, by, bw, bh] = bbox;
    let (mut din, mut nin, mut dout, mut nout) = (0u64, 0u64, 0u64, 0u64);
    for y in 0..H {
        for x in 0..W {
            let i = ((y * W + x) * 3) as usize;
            let d: u64 = (0..3).map(|k| a[i + k].abs_diff(b[i + k]) as u64).sum();
            if x >= bx && x < bx + bw && y >= by && y < by + bh {
                din += d;
                nin += 1;
            } else {
                dout += d;
                nout += 1;
            }
        }
    }
    (
        din as f64 / nin.max(1) as f64,
        dout as f64 / nout.max(1) as f64,
    )
}

#[test]
fn smoke_label_marks_where_the_picture_changed() {
    for (kind, seed) in [
        (SceneKind::Tower, 11),
        (SceneKind::Fixed, 12),
        (SceneKind::Drone, 13),
        (SceneKind::Bodycam, 14),
    ] {
        let s = spec(kind, Lighting::Day, seed);
        let smoke = vec![EventSpec::new(EventClass::Smoke, 5.0)];
        let (with, labels) = render(s, smoke, 200.0);
        let (without, _) = render(s, vec![], 200.0);
        let o = labels.objects[0];
        assert_eq!(o.class, EventClass::Smoke);
        assert!(o.visible, "{kind:?}: {o:?}");
        assert!(o.coverage > 0.0 && o.coverage < 1.0);
        assert!(o.bbox[0] + o.bbox[2] <= W && o.bbox[1] + o.bbox[3] <= H);
        let (inside, outside) = diff_inside_outside(&with, &without, o.bbox);
        assert!(
            inside > 4.0,
            "{kind:?}: smoke changed its box by only {inside:.2}"
        );
        assert!(
            inside > outside * 5.0,
            "{kind:?}: inside {inside:.2}, outside {outside:.2}"
        );
    }
}

#[test]
fn smoke_is_absent_before_onset_and_grows_after() {
    let s = spec(SceneKind::Tower, Lighting::Day, 21);
    let mut scene = Scene::new(s, vec![EventSpec::new(EventClass::Smoke, 10.0)]).expect("valid");
    let mut rgb = vec![0; scene.frame_len()];
    let before = scene.render_rgb(9.0, &mut rgb).expect("fits").objects[0];
    assert!(!before.visible);
    assert_eq!(before.coverage, 0.0);
    let coverage: Vec<f64> = [20.0, 60.0, 150.0, 400.0]
        .iter()
        .map(|&t| scene.render_rgb(t, &mut rgb).expect("fits").objects[0].coverage)
        .collect();
    assert!(coverage.windows(2).all(|w| w[1] > w[0]), "{coverage:?}");
}

#[test]
fn flood_rises_over_the_ground() {
    for (kind, seed) in [
        (SceneKind::Drone, 31),
        (SceneKind::Fixed, 32),
        (SceneKind::Bodycam, 33),
    ] {
        let s = spec(kind, Lighting::Day, seed);
        let mut scene = Scene::new(s, vec![EventSpec::new(EventClass::Flood, 3.0)]).expect("valid");
        let mut rgb = vec![0; scene.frame_len()];
        let before = scene.render_rgb(2.0, &mut rgb).expect("fits").objects[0];
        assert!(!before.visible);
        let coverage: Vec<f64> = [5.0, 15.0, 40.0, 120.0]
            .iter()
            .map(|&t| scene.render_rgb(t, &mut rgb).expect("fits").objects[0].coverage)
            .collect();
        assert!(
            coverage.windows(2).all(|w| w[1] >= w[0]),
            "{kind:?} {coverage:?}"
        );
        assert!(
            coverage[3] > 0.02 && coverage[3] > coverage[0],
            "{kind:?} {coverage:?}"
        );

        // The flooded box is browner than the dry frame there.
        let labels = scene.render_rgb(120.0, &mut rgb).expect("fits");
        let (dry, _) = render(s, vec![], 120.0);
        let (inside, _) = diff_inside_outside(&rgb, &dry, labels.objects[0].bbox);
        assert!(
            inside > 4.0,
            "{kind:?}: flood changed its box by only {inside:.2}"
        );
    }
}

#[test]
fn labels_follow_event_order() {
    let s = spec(SceneKind::Fixed, Lighting::Dusk, 41);
    let events = vec![
        EventSpec::new(EventClass::Flood, 0.0),
        EventSpec::new(EventClass::Smoke, 0.0),
    ];
    let (_, labels) = render(s, events, 100.0);
    assert_eq!(labels.objects.len(), 2);
    assert_eq!(labels.objects[0].class, EventClass::Flood);
    assert_eq!(labels.objects[1].class, EventClass::Smoke);
}

#[test]
fn i420_of_a_rendered_frame_has_the_right_planes() {
    let (rgb, _) = render(spec(SceneKind::Tower, Lighting::Day, 3), vec![], 0.0);
    let mut yuv = vec![0; i420_len(W, H)];
    rgb_to_i420(&rgb, W, H, &mut yuv).expect("fits");
    assert_eq!(yuv.len(), (W * H + 2 * (W / 2) * (H / 2)) as usize);
    // Limited range: luma 16..=235.
    assert!(
        yuv[..(W * H) as usize]
            .iter()
            .all(|&y| (16..=235).contains(&y))
    );
}
