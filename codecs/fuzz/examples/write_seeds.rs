//! Writes the generated seed corpus (see `src/seeds.rs`) under `corpus/<target>/`,
//! replacing seeds of the same name and leaving every other file alone:
//! `cargo run --manifest-path codecs/fuzz/Cargo.toml --example write_seeds`.

use std::fs;
use std::path::{Path, PathBuf};

use lookout_fuzz::seeds::{self, Clip, Seed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let testdata = fuzz.join("../testdata");
    let mut clips: Vec<Clip> = Vec::new();
    for entry in fs::read_dir(&testdata)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".h264") || name.ends_with(".h265") {
            clips.push((name, fs::read(&path)?));
        }
    }
    clips.sort();
    write(fuzz, "nal_parsers", seeds::nal_parsers(&clips))?;
    write(fuzz, "relay_frames", seeds::relay_frames(&clips)?)?;
    write(fuzz, "relay_messages", seeds::relay_messages(&clips)?)?;
    Ok(())
}

fn write(fuzz: &Path, target: &str, seeds: Vec<Seed>) -> std::io::Result<()> {
    let dir: PathBuf = fuzz.join("corpus").join(target);
    fs::create_dir_all(&dir)?;
    let count = seeds.len();
    let bytes: usize = seeds.iter().map(|(_, s)| s.len()).sum();
    for (name, seed) in seeds {
        fs::write(dir.join(name), seed)?;
    }
    println!(
        "{target}: {count} seeds, {bytes} bytes in {}",
        dir.display()
    );
    Ok(())
}
