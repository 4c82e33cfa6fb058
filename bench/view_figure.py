"""What a `roboscape-r view` recording of a world-model run holds, read back from its MCAP with rosbags:
a JSON of its topics (type, message count, image size) and a PNG of the first episode's real | dream |
goal frames and the held-action rollouts' last frames, as an image panel in Foxglove would show them.

    roboscape-r view path=outputs/runs/tiny out=outputs/views/tiny
    python bench/view_figure.py outputs/views/tiny docs/results/view_tiny
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from roboscape_r_ros.world_model.media import labelled_grid, write_png

COLUMNS = 6  # frames shown per row, evenly spread over the first episode


def read(folder: Path) -> tuple[dict, dict[str, list]]:
    store = get_typestore(Stores.ROS2_KILTED)
    topics, messages = {}, {}
    with Reader(folder) as reader:
        for connection in reader.connections:
            topics[connection.topic] = {"type": connection.msgtype, "messages": connection.msgcount}
        for connection, stamp, raw in reader.messages():
            msg = store.deserialize_cdr(raw, connection.msgtype)
            if connection.msgtype == "sensor_msgs/msg/Image":
                frame = np.asarray(msg.data).reshape(msg.height, msg.width, 3)
                topics[connection.topic]["image"] = [msg.height, msg.width]
                messages.setdefault(connection.topic, []).append((stamp, frame))
            elif connection.msgtype == "std_msgs/msg/String":
                messages.setdefault(connection.topic, []).append((stamp, msg.data))
    return topics, messages


def main(folder: Path, out: Path) -> None:
    topics, messages = read(folder)
    episodes = messages["/wm/episode"]
    end = episodes[1][0] if len(episodes) > 1 else float("inf")  # the first episode's messages come before
    rows = []
    for topic in ("/wm/real", "/wm/dream", "/wm/goal"):
        clip = [frame for stamp, frame in messages.get(topic, []) if stamp < end]
        if clip:
            pick = np.linspace(0, len(clip) - 1, COLUMNS).round().astype(int)
            rows.append(([clip[i][None] for i in pick], topic, [f"step {i}" for i in pick]))
    held = sorted(t for t in messages if t.startswith("/wm/held/") and t != "/wm/held/context")
    sheet = labelled_grid([r[0] for r in rows], rows[0][2], scale=3, row_labels=[r[1] for r in rows])[0]
    finals = [[messages[t][len(messages[t]) // 2 - 1][1][None]] for t in held]  # the first context's last frame
    labels = [t.removeprefix("/wm/held/") for t in held]
    strip = labelled_grid([[f[0] for f in finals]], labels, scale=3, row_labels=["/wm/held/*, last"])[0]
    width = max(sheet.shape[1], strip.shape[1])
    pad = lambda image: np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    write_png(out.with_suffix(".png"), np.concatenate([pad(sheet), pad(strip)]))
    mcap = next(folder.glob("*.mcap"))
    summary = {
        "recording": folder.name,
        "mcap_bytes": mcap.stat().st_size,
        "episodes": [text for _, text in episodes],
        "contexts": [text for _, text in messages.get("/wm/held/context", [])],
        "topics": topics,
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
