"""The data checks behind `catdog inspect`: small pure functions over arrays.

* tiny images: shorter side under `min_side` pixels;
* colour ratio: distinct RGB colours of the photo decoded at 224x224, divided by its 50,176
  pixels; outliers lie outside [Q1 - k*IQR, Q3 + k*IQR] (k = 1.5). Drawings, cartoons, text and
  flat graphics have few colours; noise-like photos very many;
* ImageNet top-k without the photo's own class: cat classes 281-285 (tabby, tiger cat, Persian,
  Siamese, Egyptian cat) and 287 (lynx, which ImageNet models often give tabbies); dog classes
  151-268 (all the dog breeds);
* near-duplicates: 256-bit difference hash (dHash) of the grayscale photo at 17x16; pairs within
  a Hamming distance `max_distance` (default 10 bits; 64-bit hashes mistook dark photos for twins).
"""

from __future__ import annotations

import numpy as np

CAT_CLASSES = (281, 282, 283, 284, 285, 287)
DOG_CLASSES = tuple(range(151, 269))
PET_CLASSES = {0: CAT_CLASSES, 1: DOG_CLASSES}


def tiny(sizes: np.ndarray, min_side: int = 50) -> np.ndarray:
    """Boolean mask of images whose shorter side is under `min_side`; sizes is (N, 2) = (w, h)."""
    return np.asarray(sizes).min(axis=1) < min_side


def colour_ratio(image: np.ndarray) -> float:
    """Distinct RGB colours / pixels of one uint8 (H, W, 3) image."""
    flat = image.reshape(-1, 3).astype(np.uint32)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    return float(np.unique(codes).size / codes.size)


def iqr_outliers(values: np.ndarray, k: float = 1.5) -> tuple[np.ndarray, tuple[float, float]]:
    """Mask of values outside [Q1 - k IQR, Q3 + k IQR], and those two fences."""
    q1, q3 = np.percentile(values, [25, 75])
    low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    return (values < low) | (values > high), (float(low), float(high))


def top_k_misses(probabilities: np.ndarray, labels: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """For (N, 1000) ImageNet probabilities and labels (0 cat, 1 dog, -1 unknown):
    a mask of photos whose top-k holds no class of their label, and each photo's summed
    probability of its label's classes (the "pet score")."""
    top = np.argsort(-probabilities, axis=1)[:, :k]
    miss = np.zeros(len(labels), bool)
    score = np.full(len(labels), np.nan)
    for label, classes in PET_CLASSES.items():
        rows = labels == label
        miss[rows] = ~np.isin(top[rows], classes).any(axis=1)
        score[rows] = probabilities[rows][:, list(classes)].sum(axis=1)
    return miss, score


HASH_SIZE = 16  # dHash of a HASH_SIZE x (HASH_SIZE + 1) grayscale thumbnail: HASH_SIZE**2 bits


def dhash(gray: np.ndarray) -> np.ndarray:
    """Difference hash of a (H, W + 1) grayscale array, packed: one bit per horizontal step."""
    return np.packbits((gray[:, 1:] > gray[:, :-1]).ravel())


def near_duplicates(hashes: list[np.ndarray], max_distance: int = 10) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) for every pair i < j of hashes within `max_distance` bits."""
    h = np.stack(hashes)
    pairs = []
    for i in range(len(h) - 1):
        distance = np.unpackbits(np.bitwise_xor(h[i + 1 :], h[i]), axis=1).sum(axis=1)
        for j in np.flatnonzero(distance <= max_distance):
            pairs.append((i, i + 1 + int(j), int(distance[j])))
    return pairs
