"""The loop's front half: which recorded frames go to labeling, and why.

    policy.py       SamplingPolicy: budget, window, the strategies and their shares (policy.yaml)
    strategies.py   one small class per reason to label a frame, behind the `Strategy` protocol
    sampler.py      sample(): the candidates read from the stores, the budget filled per station-day

`labeling.bridge.Bridge.sample` runs it with the bridge's database and dataset, and queues the
picks (`qc label sample --queue`, `qc label push --sample`). No Label Studio SDK is imported here.
"""
