"""Decay kernels K(age), in Python (for plots and tests) beside their SQL twin.

With age in days (age >= 0) and the parameters of DecayConfig:

    exponential   K = 2^(-age / h)                      half-life h
    power_law     K = (1 + age / tau)^(-p)              heavy tail: old events never quite vanish
    sigmoid       K = 1 / (1 + exp((age - t0) / s))     a forgetting curve: flat, then a drop at t0
    window        K = 1 if age < w else 0               a sliding window
    none          K = 1

A type's or a user's memory m stretches the time axis: K(age / m). Each kernel is 1 at
age 0 (the sigmoid: 1 / (1 + exp(-t0 / s))), non-increasing in age, and finite and
non-negative at any age (huge ages give 0, never NaN or an overflow).
`sql/features/decayed_interactions.sql` computes the same formulas in DuckDB.
"""

from __future__ import annotations

import numpy as np

from decayrec.config import DecayConfig

KERNELS = ("exponential", "power_law", "sigmoid", "window", "none")


def kernel_weight(
    age_days: np.ndarray | float, decay: DecayConfig, memory: float = 1.0
) -> np.ndarray:
    """K(age / memory) for ages in days."""
    age = np.asarray(age_days, dtype=np.float64) / memory
    if decay.kernel == "exponential":
        return np.exp(-np.log(2.0) * age / decay.half_life_days)
    if decay.kernel == "power_law":
        return np.power(1.0 + age / decay.power_tau_days, -decay.power_exponent)
    if decay.kernel == "sigmoid":
        z = np.minimum((age - decay.sigmoid_midpoint_days) / decay.sigmoid_width_days, 700.0)
        return 1.0 / (1.0 + np.exp(z))
    if decay.kernel == "window":
        return (age < decay.window_days).astype(np.float64)
    return np.ones_like(age)


def saturate(total: np.ndarray | float, decay: DecayConfig) -> np.ndarray:
    """S(sum of weights of a pair): how repeated interactions accumulate."""
    total = np.asarray(total, dtype=np.float64)
    if decay.saturation == "log1p":
        return np.log1p(total)
    if decay.saturation == "cap":
        return np.minimum(total, decay.saturation_cap)
    return total


def effective_half_life(decay: DecayConfig, memory: float = 1.0) -> float:
    """The age (days) at which K falls to half of K(0), for plots and the user table."""
    if decay.kernel == "exponential":
        return decay.half_life_days * memory
    if decay.kernel == "power_law":
        return decay.power_tau_days * (2.0 ** (1.0 / decay.power_exponent) - 1.0) * memory
    if decay.kernel == "sigmoid":
        k0 = 1.0 / (1.0 + np.exp(-decay.sigmoid_midpoint_days / decay.sigmoid_width_days))
        # 1 / (1 + exp(z)) = k0 / 2  =>  z = ln(2 / k0 - 1)
        return (
            decay.sigmoid_midpoint_days + decay.sigmoid_width_days * float(np.log(2.0 / k0 - 1.0))
        ) * memory
    if decay.kernel == "window":
        return decay.window_days * memory
    return float("inf")
