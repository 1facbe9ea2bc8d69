//! The training-data writer and the contact sheet, end to end on disk.

use std::path::PathBuf;

use lookout_scene::{
    Lighting, MIN_FLOOD_COVERAGE, MIN_SMOKE_COVERAGE, Only, SampleClass, SamplePlan, SceneKind,
    contact_sheet, render_sample, write_dataset, write_dataset_only,
};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lookout-scene-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let file = std::fs::File::open(path).expect("png exists");
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("valid png");
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn writes_images_labels_and_index() {
    let dir = scratch_dir("dataset");
    let summary = write_dataset(&dir, 100..109, 48).expect("written");
    assert_eq!(summary.images, 9);
    // Three of each class planned; a positive whose event never became visible is `none`.
    assert_eq!(
        (
            summary.smoke + summary.flood + summary.below_min_coverage,
            summary.none - summary.below_min_coverage
        ),
        (6, 3)
    );
    let index = std::fs::read_to_string(dir.join("index.jsonl")).expect("index");
    assert_eq!(index.lines().count(), 9);
    for (seed, line) in (100..109u64).zip(index.lines()) {
        let from_index: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        let stem = format!("{seed:06}");
        assert_eq!(from_index["image"], format!("{stem}.png"));
        assert_eq!(png_size(&dir.join(format!("{stem}.png"))), (48, 48));
        let text = std::fs::read_to_string(dir.join(format!("{stem}.json"))).expect("label file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["seed"], seed);
        let class = v["class"].as_str().expect("class");
        assert!(["smoke", "flood", "none"].contains(&class));
        assert!(
            ["tower", "drone", "bodycam", "fixed"].contains(&v["scene"].as_str().expect("scene"))
        );
        assert!(["day", "dusk", "haze"].contains(&v["lighting"].as_str().expect("lighting")));
        assert!(v["t_s"].as_f64().is_some());
        let objects = v["objects"].as_array().expect("objects");
        let confusers = v["confusers"].as_array().expect("confusers");
        if class == "none" {
            assert!(objects.is_empty());
            if v.get("planned").is_none() {
                assert!(confusers.len() >= 2, "{v}");
            }
        } else {
            assert_eq!(objects.len(), 1, "{v}");
            assert_eq!(objects[0]["class"], class);
            let bbox: Vec<u64> = objects[0]["bbox"]
                .as_array()
                .expect("bbox")
                .iter()
                .map(|n| n.as_u64().expect("integer"))
                .collect();
            assert_eq!(bbox.len(), 4);
            assert!(bbox[0] + bbox[2] <= 48 && bbox[1] + bbox[3] <= 48);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn positives_reach_the_minimum_coverage() {
    for seed in 0..12u64 {
        let plan = SamplePlan::from_seed(seed);
        let s = render_sample(&plan, 64, 64).expect("renders");
        assert_eq!(s.rgb.len(), 64 * 64 * 3);
        if !s.meets_min_coverage {
            // An event that never became visible enough is not labelled present.
            assert_eq!(s.class, SampleClass::None, "{plan:?}");
            assert!(s.objects.is_empty(), "{plan:?}");
            continue;
        }
        assert_eq!(s.class, plan.class);
        match plan.class {
            SampleClass::None => assert!(s.objects.is_empty()),
            SampleClass::Smoke => assert!(s.objects[0].coverage >= MIN_SMOKE_COVERAGE, "{plan:?}"),
            SampleClass::Flood => assert!(s.objects[0].coverage >= MIN_FLOOD_COVERAGE, "{plan:?}"),
        }
    }
}

#[test]
fn contact_sheet_is_a_grid_png() {
    let dir = scratch_dir("sheet");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("contact.png");
    let plans = contact_sheet(&path, 1, 18).expect("written");
    assert_eq!(plans.len(), 24);
    // 6 columns of 32+8 px, a 14 px legend and 4 rows of 18+8 px.
    assert_eq!(png_size(&path), (6 * 40, 14 + 4 * 26));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_sizes_are_errors() {
    let dir = scratch_dir("bad");
    assert!(write_dataset(&dir, 0..1, 0).is_err());
    assert!(contact_sheet(&dir.join("x.png"), 0, 1).is_err());
}

#[test]
fn only_restricts_kind_and_lighting_and_keeps_the_seeds_class() {
    let dir = scratch_dir("only");
    let only = Only {
        kind: Some(SceneKind::Bodycam),
        lighting: Some(Lighting::Dusk),
    };
    let summary = write_dataset_only(&dir, 200..206, 48, only).expect("written");
    assert_eq!(summary.images, 6);
    let index = std::fs::read_to_string(dir.join("index.jsonl")).expect("index");
    for (seed, line) in (200..206u64).zip(index.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        assert_eq!(v["scene"], "bodycam", "{v}");
        assert_eq!(v["lighting"], "dusk", "{v}");
        // The class is the seed's own (seed % 3), whatever the restriction.
        let planned = SamplePlan::from_seed(seed).class;
        assert_eq!(only.plan(seed).class, planned);
        if planned == SampleClass::None {
            assert_eq!(v["class"], "none");
        }
    }
    // No restriction is the seed's own plan.
    assert_eq!(Only::default().plan(201), SamplePlan::from_seed(201));
    let _ = std::fs::remove_dir_all(&dir);
}
