"""ALS matrix factorisation with `implicit` (CPU), behind the shared model API."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Self

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns and slows down otherwise
# OpenMP threads sleep at barriers instead of spinning: on a busy 2-core machine spinning made a
# 300x60 fit take 2 s instead of 0.03 s, and amazon-beauty fits 30-45% slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from training.config import AlsConfig  # noqa: E402
from training.dataset import Dataset  # noqa: E402
from training.model_api import Model  # noqa: E402


def make_implicit_model(cfg: AlsConfig, threads: int = 0):
    """The bare implicit model for a config (also what benchmarks time against)."""
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(factors=cfg.factors, regularization=cfg.regularization, alpha=cfg.alpha,
                                   iterations=cfg.iterations, random_state=cfg.seed,
                                   num_threads=threads, calculate_training_loss=False)


class ALS(Model):
    name = "als"

    def __init__(self, cfg: AlsConfig, on_iteration: Callable[[int], None] | None = None):
        self.cfg = cfg
        self.on_iteration = on_iteration
        self.member_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def fit(self, ds: Dataset, matrix: sp.csr_matrix, iterations: int | None = None,
            start: tuple[np.ndarray, np.ndarray] | None = None) -> Self:
        """Fit ``matrix``; ``start`` = (member, item) factors to continue from (same shapes)."""
        callback = (lambda it, _elapsed, _loss: self.on_iteration(it)) if self.on_iteration else None
        cfg = self.cfg if iterations is None else self.cfg.model_copy(update={"iterations": iterations})
        with threadpool_limits(1, "blas"):
            model = make_implicit_model(cfg)
            if start is not None:  # implicit continues from factors it already has
                expected = ((matrix.shape[0], cfg.factors), (matrix.shape[1], cfg.factors))
                if (start[0].shape, start[1].shape) != expected:
                    raise ValueError(f"warm start factors {start[0].shape}, {start[1].shape} "
                                     f"do not fit a {matrix.shape} matrix with {cfg.factors} factors")
                model.user_factors = np.array(start[0], dtype=np.float32)
                model.item_factors = np.array(start[1], dtype=np.float32)
            model.fit(matrix.tocsr().astype(np.float32), show_progress=False, callback=callback)
        self.member_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return self.member_factors[members] @ self.item_factors.T

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        from training.neighbours import cosine_neighbours

        nbr, sim = cosine_neighbours(self.item_factors, n, queries=np.asarray(items))
        return nbr, sim


def fit_final(ds: Dataset, matrix: sp.csr_matrix, cfg: AlsConfig, steps,
              start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[ALS, dict]:
    """The published ALS: continued from ``start`` (the re-ranker's first stage, fitted before its
    cutoff) for ``warm_iterations`` sweeps, or fitted from scratch. Returns it and what ran."""
    warm = start is not None and cfg.warm_iterations > 0
    sweeps = cfg.warm_iterations if warm else cfg.iterations
    name = "ALS (continued from the re-ranker's first stage)" if warm else "ALS"
    with steps.step(name, total=sweeps) as advance:
        als = ALS(cfg, on_iteration=lambda _it: advance(1)).fit(ds, matrix, iterations=sweeps,
                                                                start=start if warm else None)
    return als, {"warm_start": warm, "iterations": sweeps}
