"""The labeling loop's front half: the active-learning sampler (`sampling/`), the bridge to
Label Studio (`qc label setup | sample | push | pull`), the one module that imports
label-studio-sdk (`client.py`), and a test server (`server.py`).

Why a room of its own, beside `training/` (torch) rather than in `inspection/`: the SDK pulls
in its own pydantic models, httpx and lxml and takes seconds to import (6 s measured here on a
loaded 2-core box), and a line PC never labels. `inspection/` keeps what the service itself
needs without the SDK: the queue table (`inspection/store/labels.py`) the webhook writes to.
The sampler lives here (it imports no SDK either) because choosing what to label is the
loop's business, not the line's. Nothing here is imported by `inspection/` or `serving/`
except the settings, which are plain pydantic.
"""
