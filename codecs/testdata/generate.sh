#!/bin/sh
# Regenerates the encoder captures in this folder (run from codecs/testdata/).
# Three frames each of a moving ball, so the clips stay a few KB; the first frame is
# the only keyframe. The tests in codecs/tests/fixtures.rs check size, frame rate,
# profile and chroma format against the settings below.
set -eu

h264() { # file width height framerate profile [extra caps] [extra x264 options]
    gst-launch-1.0 -q videotestsrc pattern=ball num-buffers=3 \
        ! "video/x-raw,format=I420,width=$2,height=$3,framerate=$4$6" \
        ! x264enc key-int-max=25 bframes=0 pass=quant quantizer=40 $7 \
        ! "video/x-h264,stream-format=byte-stream,alignment=au,profile=$5" \
        ! filesink location="$1"
}
h265() { # file width height framerate format
    gst-launch-1.0 -q videotestsrc pattern=ball num-buffers=3 \
        ! "video/x-raw,format=$5,width=$2,height=$3,framerate=$4" \
        ! x265enc key-int-max=25 option-string=qp=40 \
        ! video/x-h265,stream-format=byte-stream,alignment=au \
        ! filesink location="$1"
}

h264 h264_720p_baseline.h264 1280 720 25/1 baseline "" ""
# 1080 is not a multiple of 16: exercises frame cropping.
h264 h264_1080p_high.h264 1920 1080 30/1 high "" ""
# Interlaced (MBAFF): frame_mbs_only_flag = 0, cropping counts in field rows.
h264 h264_1080i_high.h264 1920 1080 30000/1001 high ",interlace-mode=interleaved" "interlaced=true"
# 854 is not a multiple of 16: exercises horizontal cropping.
h264 h264_854x480_main.h264 854 480 15/1 main "" ""
h265 h265_720p.h265 1280 720 25/1 I420
# 1080 is not a multiple of the minimum coding block: exercises the conformance window.
h265 h265_1080p.h265 1920 1080 30/1 I420
# 4:4:4 (Main 4:4:4, profile 4): conformance window in luma units.
h265 h265_854x480_444.h265 854 480 15/1 Y444
