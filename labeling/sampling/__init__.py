"""The loop's front half: which recorded frames go to labeling, and why.

    policy.py       SamplingPolicy: budget, window, the strategies and their shares (policy.yaml),
                    labels from review and PASS negatives
    strategies.py   one small class per reason to label a frame, behind the `Strategy` protocol;
                    set-level ones (`SetLine`) choose over a station-day's whole candidate set
    clustering.py   k-means, typicality and k-center for the set-level strategies
    embeddings.py   each frame's embedding from the production detector itself (ONNX Runtime)
    sampler.py      sample(): the candidates read from the stores, the budget filled per station-day

`labeling.bridge.Bridge.sample` runs it with the bridge's database and dataset, and queues the
picks (`qc label sample --queue`, `qc label push --sample`). No Label Studio SDK is imported here.
"""
