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

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        callback = (lambda it, _elapsed, _loss: self.on_iteration(it)) if self.on_iteration else None
        with threadpool_limits(1, "blas"):
            model = make_implicit_model(self.cfg)
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
