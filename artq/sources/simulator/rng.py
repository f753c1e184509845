"""Counter-based random numbers: every draw is a hash of (key, counter), so any minute's value
can be computed alone, in any order and at any resolution, and is always the same.

``key`` folds in (seed, app, server, stream); the counter is the minute (or hour, day) index.
SplitMix64 is enough here: the values only have to look random and be reproducible.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def stable_key(*parts: object) -> int:
    """A 64-bit key from strings/ints, stable across processes (unlike ``hash``)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def salted(key: int | np.ndarray, salt: int) -> np.ndarray:
    """A derived key (one stream per salt); ``key`` may be an array of keys, e.g. one per tier."""
    return np.asarray(key, dtype=np.uint64) ^ np.uint64(salt)


def uniform(key: int | np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Uniform(0, 1), open at both ends, one per counter value (keys and counters broadcast)."""
    c = np.asarray(counter).astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        x = _mix(_mix(c) ^ np.asarray(key, dtype=np.uint64))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0


def normal(key: int | np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Standard normal (Box-Muller from two independent uniform streams)."""
    u1 = uniform(key, counter)
    u2 = uniform(salted(key, 0x5DEECE66D), counter)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def poisson(key: int | np.ndarray, counter: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Poisson(lam) by inverse CDF from one uniform each; normal approximation above 40."""
    lam = np.asarray(lam, dtype=np.float64)
    u = np.broadcast_to(uniform(key, counter), lam.shape)
    small = lam < 40.0
    out = np.zeros(lam.shape, dtype=np.int64)
    if small.any():
        ls, us = lam[small], u[small]
        k = np.zeros(ls.shape, dtype=np.int64)
        p = np.exp(-ls)
        cdf = p.copy()
        for i in range(1, 120):  # lam < 40 leaves < 1e-20 of the mass beyond 120
            more = us > cdf
            if not more.any():
                break
            k += more
            p = p * ls / i
            cdf = cdf + p
        out[small] = k
    big = ~small
    if big.any():
        z = np.broadcast_to(normal(salted(key, 0x2545F491), counter), lam.shape)[big]
        out[big] = np.maximum(0, np.rint(lam[big] + np.sqrt(lam[big]) * z)).astype(np.int64)
    return out


def round_calls(x: np.ndarray) -> np.ndarray:
    """Whole calls from an expected count."""
    return np.rint(x).astype(np.int64)
