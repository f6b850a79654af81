"""The geometry the set-level strategies share: k-means, typicality and k-center over embeddings.

Example::

    import numpy as np
    from labeling.sampling.clustering import k_center, kmeans, typicality

    points = np.random.default_rng(0).normal(size=(40, 8))
    labels = kmeans(points, 4, seed=0)            # one cluster id per point, 0..3
    dense = typicality(points[labels == 0], 5)    # 1 / mean distance to the 5 nearest others
    spread = k_center(points, 3)                   # [(index, distance to the nearest centre), ...]

Plain numpy, deterministic for a given seed: the candidate sets are a station-day's frames
(hundreds to a few thousand), so exact distances are cheap and no index is needed.
"""

from __future__ import annotations

import numpy as np

ITERATIONS = 50


def kmeans(points: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """Cluster ids (0..k-1) for `points` (n x d): k-means++ seeding from `seed`, then Lloyd's
    iterations until nothing moves. `k` above the number of points is cut to it."""
    n = len(points)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = [points[int(rng.integers(n))]]
    for _ in range(1, k):
        nearest = _squared(points, np.asarray(centres)).min(axis=1)
        total = float(nearest.sum())
        if total <= 0:  # fewer distinct points than clusters: the rest would repeat a centre
            break
        centres.append(points[int(rng.choice(n, p=nearest / total))])
    centre_array = np.asarray(centres, dtype=np.float64)
    labels = np.full(n, -1)
    for _ in range(ITERATIONS):
        moved = _squared(points, centre_array).argmin(axis=1)
        if np.array_equal(moved, labels):
            break
        labels = moved
        for c in range(len(centre_array)):
            members = points[labels == c]
            if len(members):
                centre_array[c] = members.mean(axis=0)
    return labels


def typicality(points: np.ndarray, neighbours: int) -> np.ndarray:
    """TypiClust's density of each point: 1 / mean distance to its `neighbours` nearest others
    (fewer when the set is smaller; a lone point gets 0)."""
    n = len(points)
    k = min(neighbours, n - 1)
    if k <= 0:
        return np.zeros(n)
    distances = np.sqrt(_squared(points, points))
    np.fill_diagonal(distances, np.inf)
    nearest = np.sort(distances, axis=1)[:, :k]
    return 1.0 / (nearest.mean(axis=1) + 1e-12)


def k_center(points: np.ndarray, k: int, *, centres: np.ndarray | None = None) -> list[tuple[int, float | None]]:
    """Greedy k-center: `k` indices of `points`, each the farthest from the centres so far
    (`centres`: points already chosen elsewhere), with that distance. Without centres the
    first is index 0 (the caller orders the points, e.g. most uncertain first) and its
    distance is None. Ties go to the lower index."""
    n = len(points)
    if n == 0 or k <= 0:
        return []
    chosen: list[tuple[int, float | None]] = []
    if centres is None or not len(centres):
        chosen.append((0, None))
        nearest = np.sqrt(_squared(points, points[:1])).ravel()
    else:
        nearest = np.sqrt(_squared(points, centres)).min(axis=1)
    while len(chosen) < min(k, n):
        taken = {i for i, _ in chosen}
        order = [i for i in np.argsort(-nearest, kind="stable") if int(i) not in taken]
        index = int(order[0])
        chosen.append((index, float(nearest[index])))
        nearest = np.minimum(nearest, np.sqrt(_squared(points, points[index:index + 1])).ravel())
    return chosen


def _squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a (n x d) and b (m x d)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)
