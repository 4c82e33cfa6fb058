"""Read a `roboscape-r view` recording with the MCAP project's own Python reader and its ROS 2 decoder
(`mcap`, `mcap-ros2-support`), independent of the rosbags that wrote it: the profile, the schemas and
their encoding, and every message decoded, counted per topic.

    pip install mcap==1.6.0 mcap-ros2-support==0.6.0    # in any venv: not a dependency of this package
    python tools/check_view_mcap.py outputs/views/tiny/tiny.mcap
"""

import sys
from collections import Counter

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

with open(sys.argv[1], "rb") as f:
    reader = make_reader(f, decoder_factories=[DecoderFactory()])
    summary = reader.get_summary()
    schemas = sorted({(s.name, s.encoding) for s in summary.schemas.values()})
    print(f"profile {reader.get_header().profile}; schemas {schemas}")
    encodings = sorted({c.message_encoding for c in summary.channels.values()})
    print(f"channels {len(summary.channels)}, message encodings {encodings}")
    counts, first = Counter(), {}
    for _, channel, _, decoded in reader.iter_decoded_messages():
        counts[channel.topic] += 1
        first.setdefault(channel.topic, decoded)
for topic, n in sorted(counts.items()):
    print(f"  {topic:<24} {n:>5}")
for topic in [t for t, msg in first.items() if hasattr(msg, "encoding")][:1]:
    image = first[topic]
    print(f"first {topic}: {image.height}x{image.width} {image.encoding}, {len(image.data)} bytes")
