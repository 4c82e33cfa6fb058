"""`roboscape-r import-bag` on a synthetic recording of about 1 GB: wall time per GB, frames kept
and dropped, the largest alignment age, dataset size.

The bag holds what an arm's graph records: a 640x480 rgb8 camera at 30 Hz (Image, or
CompressedImage jpeg with --compressed), 7-joint JointState at 200 Hz, TwistStamped commands at
30 Hz stamped 5 ms after the frame they answer (so a frame holds the previous command, ~28 ms old),
episode ids every 10 s and a success flag (false at the start, true 2 s before the end). Joint states pause for
0.5 s in the middle of every episode: the frames there are dropped as stale. Only the import is
timed (synthesis is not), in this process, on whatever cores it gets.

    python bench/bench_import_bag.py                          # 1 GB MCAP
    python bench/bench_import_bag.py --size-gb 0.2 --storage sqlite3 --compressed
    python bench/bench_import_bag.py --dataset outputs/datasets/bag_bench   # keep the dataset
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_results import publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from helpers.bag_writer import BagWriter  # noqa: E402  (the tests' bag writer)
from roboscape_r_ros.commands.import_bag import ImportBagConfig, run_import_bag  # noqa: E402
from roboscape_r_ros.config import load_config  # noqa: E402

WIDTH, HEIGHT, CAMERA_HZ, JOINT_HZ, EPISODE_S = 640, 480, 30, 200, 10.0
JOINTS = [f"joint{i}" for i in range(1, 8)]
COMMAND_DELAY_NS = 5_000_000
PAUSE = (4.0, 4.5)  # seconds into each episode without joint states
START_NS = 1_700_000_000 * 10**9


def frame_count(size_bytes: float) -> int:
    per_frame = WIDTH * HEIGHT * 3 + 300 * (JOINT_HZ / CAMERA_HZ) + 400  # image, joint states, command
    return max(2, int(size_bytes / per_frame))


def synthesise(path: Path, frames: int, storage: str, compressed: bool) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    background = np.stack([xx * 240 // WIDTH, yy * 240 // HEIGHT, np.full_like(xx, 90)], -1).astype(np.uint8)
    noise = rng.integers(0, 8, (16, HEIGHT, WIDTH, 3), dtype=np.uint8)  # sensor noise, cycled
    duration = frames / CAMERA_HZ
    with BagWriter(path, storage) as bag:
        joint_times = np.arange(0, duration, 1 / JOINT_HZ)
        joint = 0
        for i in range(frames):
            t = i / CAMERA_HZ
            episode, into = divmod(t, EPISODE_S)
            if into < 1e-9:
                bag.string("/episode", START_NS + round(t * 1e9), f"episode-{int(episode)}")
                bag.boolean("/success", START_NS + round(t * 1e9), False)
            if abs(into - (EPISODE_S - 2.0)) < 0.5 / CAMERA_HZ:
                bag.boolean("/success", START_NS + round(t * 1e9), True)
            while joint < len(joint_times) and joint_times[joint] <= t:
                s = joint_times[joint]
                if not PAUSE[0] <= s % EPISODE_S < PAUSE[1]:
                    bag.joint_state("/joint_states", START_NS + round(s * 1e9), JOINTS, np.sin(s + np.arange(7)))
                joint += 1
            pixels = background + noise[i % len(noise)]
            x = int((WIDTH - 80) * (0.5 + 0.5 * np.sin(t)))
            pixels[200:280, x : x + 80] = (220, 60, 40)
            stamp = START_NS + round(t * 1e9)
            if compressed:
                bag.compressed("/camera/image_raw", stamp, pixels, "jpeg")
            else:
                bag.image("/camera/image_raw", stamp, pixels)
            bag.twist("/cmd_twist", stamp + COMMAND_DELAY_NS, [np.cos(t), 0.0, 0.1], [0.0, 0.0, 0.2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="bag size to synthesise (GB, 1e9 bytes)")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--compressed", action="store_true", help="CompressedImage jpeg instead of raw rgb8")
    parser.add_argument("--size", type=int, default=32, help="side of the imported frames")
    parser.add_argument("--dataset", default="", help="keep the imported dataset here (default: a temporary folder)")
    parser.add_argument("--workdir", default="", help="where the bag is written (default: the system temp folder)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_import_bag_", dir=args.workdir or None))
    try:
        bag = work / "bag"
        frames = frame_count(args.size_gb * 1e9)
        t0 = time.perf_counter()
        synthesise(bag, frames, args.storage, args.compressed)
        synthesis_s = time.perf_counter() - t0
        dataset = Path(args.dataset) if args.dataset else work / "dataset"
        cfg = load_config(
            ImportBagConfig,
            "import_bag",
            None,
            [
                f"bags=[{bag}]",
                f"output={dataset}",
                "overwrite=true",
                f"camera.size={args.size}",
                "action.source=twist",
                "action.topic=/cmd_twist",
                "states=[/joint_states]",
                "max_age_s=0.05",
                "episodes.split=topic",
                "labels.source=topic",
                "task=synthetic-arm",
            ],
        )
        summary = run_import_bag(cfg)
        print(summary)
        gb = summary.bag_bytes / 1e9
        report = {
            "bag": {
                "storage": args.storage,
                "camera": f"{WIDTH}x{HEIGHT} {'CompressedImage jpeg' if args.compressed else 'Image rgb8'} "
                f"at {CAMERA_HZ} Hz",
                "joint_states_hz": JOINT_HZ,
                "commands": f"TwistStamped at {CAMERA_HZ} Hz, stamped {COMMAND_DELAY_NS / 1e6:g} ms after the frame",
                "bytes": summary.bag_bytes,
                "camera_frames": summary.camera_frames,
                "seconds_recorded": frames / CAMERA_HZ,
                "synthesis_s": round(synthesis_s, 1),
            },
            "import": {
                "wall_s": round(summary.seconds, 2),
                "wall_s_per_gb": round(summary.seconds / gb, 2),
                "frames_kept": summary.kept_frames,
                "frames_dropped": summary.camera_frames - summary.kept_frames,
                "dropped_by_stream": summary.dropped,
                "max_age_limit_s": summary.max_age_limit_s,
                "max_age_used_s": summary.max_age_s,
                "episodes": summary.dataset.episodes,
                "labels": summary.labels,
                "frame_size": args.size,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            },
            "dataset": {"path": str(dataset) if args.dataset else None, "bytes": summary.dataset.size_bytes},
            "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        }
        name = f"import_bag_{args.storage}{'_jpeg' if args.compressed else ''}"
        publish(name, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
