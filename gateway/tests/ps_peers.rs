//! MPEG-2 Program Stream against muxers and a reader no one here wrote. GB/T 28181
//! devices send their video as PS; lookout's demuxer must read what real muxers make:
//! - GStreamer's `mpegpsmux` (a PSM naming stream type 0x1B, as most devices write),
//! - ffmpeg's MPEG-2 PS muxer (`-f vob`: no PSM at all, 2048-byte packs padded with
//!   padding streams), H.264 and H.265,
//!
//! each fed in RTP-sized pieces (1,400 bytes) as a device's RTP packets would cut it:
//! every frame comes out, in the right codec, with parameter sets that give the clip's
//! picture size. And the other way round: the PS lookout's simulator writes
//! (`ps::mux_frame`) is read by ffprobe, frame for frame.

use std::path::Path;
use std::process::Command;

use lookout_codecs::ps::{Limits, PsDemuxer, PsFrame};
use lookout_codecs::{Codec, annexb, h264, h265};

const FRAMES: usize = 50;

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not run: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The frames of `file` read in 1,400-byte pieces; problems the demuxer reported.
fn demux(file: &Path) -> (Vec<PsFrame>, Vec<String>) {
    let bytes = std::fs::read(file).expect("the muxer's file");
    let mut d = PsDemuxer::new(Limits::default());
    let (mut frames, mut problems) = (Vec::new(), Vec::new());
    let mut take = |d: &mut PsDemuxer| {
        while let Some(r) = d.next() {
            match r {
                Ok(f) => frames.push(f),
                Err(e) => problems.push(e.to_string()),
            }
        }
    };
    for piece in bytes.chunks(1400) {
        d.push(piece);
        take(&mut d);
    }
    d.flush();
    take(&mut d);
    (frames, problems)
}

/// Picture size from the first SPS in `frames`.
fn size(codec: Codec, frames: &[PsFrame]) -> Option<(u32, u32)> {
    frames
        .iter()
        .flat_map(|f| annexb::nal_units(&f.data))
        .find_map(|nal| match codec {
            Codec::H264 if nal.first().map(|b| b & 0x1f) == Some(7) => {
                h264::Sps::parse(nal).ok().map(|s| (s.width, s.height))
            }
            Codec::H265 if nal.first().map(|b| (b >> 1) & 0x3f) == Some(33) => {
                h265::Sps::parse(nal).ok().map(|s| (s.width, s.height))
            }
            _ => None,
        })
}

fn check(name: &str, file: &Path, codec: Codec) {
    let (frames, problems) = demux(file);
    assert!(problems.is_empty(), "{name}: {problems:?}");
    assert_eq!(frames.len(), FRAMES, "{name}: frames");
    assert!(frames.iter().all(|f| f.codec == codec), "{name}: codec");
    assert!(frames.iter().all(|f| f.pts_90k.is_some()), "{name}: PTS");
    assert_eq!(size(codec, &frames), Some((640, 360)), "{name}: SPS");
    // Each frame holds exactly one picture's slices: PTS rise by 3600 (25 fps).
    let pts: Vec<u64> = frames.iter().filter_map(|f| f.pts_90k).collect();
    assert!(
        pts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 3600),
        "{name}: PTS steps {pts:?}"
    );
}

#[test]
fn gstreamer_mpegpsmux_h264() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("g.ps");
    run(Command::new("gst-launch-1.0").args([
        "-q",
        "videotestsrc",
        &format!("num-buffers={FRAMES}"),
        "!",
        "video/x-raw,width=640,height=360,framerate=25/1",
        "!",
        "x264enc",
        "key-int-max=25",
        "bframes=0",
        "!",
        "h264parse",
        "!",
        "mpegpsmux",
        "!",
        "filesink",
        &format!("location={}", file.display()),
    ]));
    check("mpegpsmux", &file, Codec::H264);
}

fn ffmpeg_ps(dir: &Path, encoder: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{encoder}.ps"));
    run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
        ])
        .args(["-i", "testsrc2=size=640x360:rate=25"])
        .args(["-frames:v", &FRAMES.to_string(), "-c:v", encoder])
        .args(["-g", "25", "-bf", "0", "-f", "vob", "-y"])
        .arg(&file));
    file
}

#[test]
fn ffmpeg_ps_h264_without_psm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = ffmpeg_ps(dir.path(), "libx264");
    check("ffmpeg libx264", &file, Codec::H264);
}

#[test]
fn ffmpeg_ps_h265_without_psm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = ffmpeg_ps(dir.path(), "libx265");
    check("ffmpeg libx265", &file, Codec::H265);
}

/// lookout's PS (what its simulated GB/T 28181 devices send) is read by ffprobe: the
/// access units of an ffmpeg-made H.264 clip, muxed by `mux_frame`, come back as the
/// same number of H.264 frames at the same size.
#[test]
fn ffprobe_reads_lookouts_ps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (frames, _) = demux(&ffmpeg_ps(dir.path(), "libx264"));
    assert_eq!(frames.len(), FRAMES);
    let mut ps = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let key = annexb::nal_units(&f.data).any(|n| n.first().map(|b| b & 0x1f) == Some(5));
        ps.extend_from_slice(&lookout_codecs::ps::mux_frame(
            Codec::H264,
            &f.data,
            90_000 + i as u64 * 3600,
            key,
            1400,
        ));
    }
    let ours = dir.path().join("lookout.ps");
    std::fs::write(&ours, &ps).expect("write");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&ours)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "codec_name=h264".to_string(),
        "width=640".into(),
        "height=360".into(),
        format!("nb_read_frames={FRAMES}"),
    ] {
        assert!(text.lines().any(|l| l == want), "ffprobe: {text}");
    }
    // And lookout reads its own stream back frame for frame.
    let (again, problems) = demux(&ours);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        again.iter().map(|f| &f.data).collect::<Vec<_>>(),
        frames.iter().map(|f| &f.data).collect::<Vec<_>>()
    );
}
