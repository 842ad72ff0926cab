"""Bases of a layer's activation space, one interface for all: directions, projections, explained variance.

Let A be the layer's vectors (M rows, width w), mu their mean and C = cov(A) (population covariance);
the *total variance* is tr(C).

* **neuron**: the standard basis e_j, ordered by the variance C_jj of each neuron (largest first;
  ties by index). Explained-variance fractions C_jj / tr(C).
* **pca**: the eigenvectors of C, by eigenvalue (largest first); each is sign-normalised so that its
  entry of largest magnitude is positive (ties: the first such entry), which makes the basis
  deterministic. Fractions lambda_i / tr(C). Both orthogonal bases' fractions sum to 1.
* **ica** (scikit-learn's FastICA), **nmf** (NMF, on non-negative activations only, e.g. after a
  ReLU) and **dictionary** (MiniBatchDictionaryLearning, a sparse dictionary): seeded; their vectors
  are the columns of the mixing matrix / the components, and are neither orthogonal nor normalised.

For every basis the explained variance is defined the same way: the **cumulative R^2 of the first k
vectors**, R^2(k) = tr(P_k C) / tr(C), the fraction of the total variance that lies in the span of
the first k vectors (P_k the orthogonal projector onto it), i.e. 1 - ||A_c - A_c P_k||^2 / ||A_c||^2
with A_c the centred activations: the best reconstruction of A from those k vectors (plus the mean)
in the least-squares sense. It never decreases in k, and it reaches 1 exactly when the vectors span the
activations (a complete basis). ``explained_variance`` holds its increments R^2(k) - R^2(k-1), which
for the orthogonal bases are the fractions above. The non-orthogonal bases are ordered by the
variance their vector captures alone, v^T C v / |v|^2, largest first. The iterative fits see at most
:data:`FIT_ROWS` rows (a seeded subset); their explained variance is measured on all rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from polylens.errors import ParameterError

Array = np.ndarray

__all__ = ["BASES", "Basis", "fit_basis", "gram_schmidt", "k_for", "stats"]

#: The bases polylens fits, in the order of tables and views.
BASES: tuple[str, ...] = ("neuron", "pca", "ica", "nmf", "dictionary")
#: The iterative fits (ICA, NMF, dictionary) see at most this many rows (a seeded subset); their explained
#: variance is still measured on every row.
FIT_ROWS = 20_000
#: Below this relative norm a vector adds nothing new to the span of the ones before it.
_DEPENDENT = 1e-9


@dataclass(frozen=True, eq=False)
class Stats:
    """Mean (w,), covariance (w, w) and total variance of a layer's vectors."""

    mean: Array
    cov: Array
    total: float


def stats(A: Array) -> Stats:
    A = np.asarray(A, dtype=np.float64)
    mu = A.mean(axis=0)
    Ac = A - mu
    C = (Ac.T @ Ac) / max(len(A), 1)
    return Stats(mu, C, float(np.trace(C)))


def gram_schmidt(D: Array) -> tuple[Array, Array]:
    """Orthonormalise the rows of ``D`` (k, w) in order (modified Gram-Schmidt, twice).

    Returns (Q, new): Q (r, w) orthonormal rows spanning the same nested spans, and ``new`` (k,) bool,
    whether row i added a direction (rows dependent on the earlier ones add none)."""
    D = np.asarray(D, dtype=np.float64)
    k, w = D.shape
    Q = np.zeros((min(k, w), w))
    new = np.zeros(k, dtype=bool)
    r = 0
    for i in range(k):
        v = D[i].copy()
        n0 = float(np.linalg.norm(v))
        if n0 == 0 or r >= w:
            continue
        for _ in range(2):
            if r:
                v -= Q[:r].T @ (Q[:r] @ v)
        n = float(np.linalg.norm(v))
        if n > _DEPENDENT * n0:
            Q[r] = v / n
            new[i] = True
            r += 1
    return Q[:r], new


def _increments(D: Array, st: Stats) -> Array:
    """R^2(k) - R^2(k-1) for the rows of D in order (see the module docstring)."""
    Q, new = gram_schmidt(D)
    inc = np.zeros(len(D))
    if st.total > 0 and len(Q):
        inc[new] = np.einsum("iw,wv,iv->i", Q, st.cov, Q) / st.total
    return np.clip(inc, 0.0, None)


def k_for(cumulative: Array, fraction: float) -> int | None:
    """The fewest vectors whose cumulative R^2 reaches ``fraction`` (None if no number does). A
    tolerance of 1e-12 absorbs rounding in the sums."""
    hit = np.nonzero(np.asarray(cumulative) >= fraction - 1e-12)[0]
    return int(hit[0]) + 1 if len(hit) else None


@dataclass(frozen=True, eq=False)
class Basis:
    """A basis of a layer (see the module docstring).

    ``directions`` (k, w): the vectors, rows, in the basis's order; ``mean`` (w,); ``orthogonal``:
    whether the rows are orthonormal; ``explained_variance`` (k,): increments of the cumulative R^2
    (for orthogonal bases, the fraction of the total variance along each vector); ``order``: for the
    neuron basis, the neuron index of each vector; ``encode``: A -> codes (M, k), the coordinates
    along the vectors (projections for orthogonal bases); ``note``: anything a reader should know
    (non-convergence, a cap on the number of vectors)."""

    name: str
    directions: Array
    mean: Array
    orthogonal: bool
    explained_variance: Array
    encode: Callable[[Array], Array] = field(repr=False)
    order: Array | None = None
    note: str = ""

    @property
    def size(self) -> int:
        return int(self.directions.shape[0])

    @property
    def width(self) -> int:
        return int(self.directions.shape[1])

    @property
    def cumulative(self) -> Array:
        return np.cumsum(self.explained_variance)

    @property
    def complete(self) -> bool:
        return self.size >= self.width and bool(np.linalg.matrix_rank(self.directions) == self.width)

    def k80(self) -> int | None:
        return k_for(self.cumulative, 0.8)

    def k99(self) -> int | None:
        return k_for(self.cumulative, 0.99)

    def project(self, A: Array) -> Array:
        """Codes of ``A`` (M, w): its coordinates along the vectors, (M, k)."""
        return self.encode(np.asarray(A, dtype=np.float64))

    def reconstruct(self, A: Array, k: int) -> Array:
        """The least-squares reconstruction of ``A`` from the mean and the first ``k`` vectors."""
        Q, _ = gram_schmidt(self.directions[:k])
        Ac = np.asarray(A, dtype=np.float64) - self.mean
        return self.mean + (Ac @ Q.T) @ Q

    def r2(self, A: Array, k: int) -> float:
        """R^2 of :meth:`reconstruct` on ``A``, computed from the data (equals ``cumulative[k-1]`` on
        the data the basis was measured on)."""
        Ac = np.asarray(A, dtype=np.float64) - self.mean
        tot = float(np.sum(Ac ** 2))
        if tot == 0:
            return 0.0
        return 1.0 - float(np.sum((np.asarray(A) - self.reconstruct(A, k)) ** 2)) / tot


def _sign_normalise(V: Array) -> Array:
    """Each row times the sign of its largest-magnitude entry (the first one among ties)."""
    V = np.array(V, dtype=np.float64)
    idx = np.argmax(np.abs(V), axis=1)
    s = np.sign(V[np.arange(len(V)), idx])
    s[s == 0] = 1.0
    return V * s[:, None]


def _neuron(A: Array, st: Stats, **_) -> Basis:
    var = np.diag(st.cov).copy()
    order = np.argsort(-var, kind="stable")
    D = np.eye(len(var))[order]
    frac = var[order] / st.total if st.total > 0 else np.zeros(len(var))
    mu = st.mean
    return Basis("neuron", D, mu, True, frac, lambda X: (X - mu)[:, order], order=order)


def _pca(A: Array, st: Stats, **_) -> Basis:
    evals, evecs = np.linalg.eigh(st.cov)
    order = np.argsort(-evals, kind="stable")
    evals = np.clip(evals[order], 0.0, None)
    D = _sign_normalise(evecs[:, order].T)
    frac = evals / st.total if st.total > 0 else np.zeros(len(evals))
    mu = st.mean
    return Basis("pca", D, mu, True, frac, lambda X: (X - mu) @ D.T)


def _ordered(name: str, D: Array, st: Stats, encode, note: str) -> Basis:
    """A non-orthogonal basis ordered by the variance each vector captures alone."""
    norms = np.linalg.norm(D, axis=1)
    alone = np.einsum("iw,wv,iv->i", D, st.cov, D) / np.where(norms > 0, norms ** 2, 1.0)
    order = np.argsort(-alone, kind="stable")
    D = D[order]
    return Basis(name, D, st.mean, False, _increments(D, st), lambda X: encode(X)[:, order], note=note)


def _caught(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit()
    conv = [w for w in caught if "converge" in str(w.message).lower()]
    return out, ("did not converge within its iteration limit" if conv else "")


def _ica(A: Array, st: Stats, components: int, seed: int, **_) -> Basis:
    from sklearn.decomposition import FastICA

    k = min(components, A.shape[1], max(1, np.linalg.matrix_rank(st.cov)))
    ica = FastICA(n_components=k, whiten="unit-variance", random_state=seed, max_iter=400, tol=1e-4)
    _, note = _caught(lambda: ica.fit(A))
    mix = np.asarray(ica.mixing_, dtype=np.float64).T  # (k, w): A ~ S @ mix + mean
    unmix, mean = np.asarray(ica.components_, dtype=np.float64), np.asarray(ica.mean_, dtype=np.float64)
    return _ordered("ica", mix, st, lambda X: (X - mean) @ unmix.T, note)


def _nmf(A: Array, st: Stats, components: int, seed: int, **_) -> Basis:
    from sklearn.decomposition import NMF

    if A.min(initial=0.0) < 0:
        raise ParameterError("NMF needs non-negative activations (take them after a ReLU, --post); this layer has "
                             f"values down to {A.min():.3g}")
    k = min(components, A.shape[1])
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=300, tol=1e-4)
    _, note = _caught(lambda: nmf.fit(A))
    H = np.asarray(nmf.components_, dtype=np.float64)
    return _ordered("nmf", H, st, lambda X: nmf.transform(np.clip(X, 0, None)), note)


def _dictionary(A: Array, st: Stats, components: int, seed: int, alpha: float = 1.0, **_) -> Basis:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    k = min(components, A.shape[1])
    mu = st.mean
    scale = float(np.sqrt(st.total / A.shape[1])) if st.total > 0 else 1.0
    dl = MiniBatchDictionaryLearning(n_components=k, alpha=alpha, random_state=seed, batch_size=256, max_iter=5,
                                     fit_algorithm="cd", transform_algorithm="lasso_cd", transform_alpha=alpha)
    _, note = _caught(lambda: dl.fit((A - mu) / scale))
    D = np.asarray(dl.components_, dtype=np.float64)
    return _ordered("dictionary", D, st, lambda X: dl.transform((X - mu) / scale), note)


_FITS = {"neuron": _neuron, "pca": _pca, "ica": _ica, "nmf": _nmf, "dictionary": _dictionary}


def fit_basis(name: str, A: Array, *, components: int = 32, seed: int = 0, st: Stats | None = None,
              alpha: float = 1.0) -> Basis:
    """Fit basis ``name`` (one of :data:`BASES`) to the vectors ``A`` (M, w). ``components``: how many
    vectors the non-orthogonal bases get (at most w); ``seed``: their random state. ParameterError when
    a basis does not apply (NMF on negative values)."""
    if name not in _FITS:
        raise ParameterError(f"The 'basis' parameter of bases must be one of {', '.join(map(repr, BASES))}. "
                             f"Got {name!r} instead.")
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or len(A) < 2:
        raise ParameterError(f"A basis needs at least two activation vectors; got an array of shape {A.shape}.")
    st = stats(A) if st is None else st
    fit_on = A
    if name in ("ica", "nmf", "dictionary") and len(A) > FIT_ROWS:
        fit_on = A[np.sort(np.random.default_rng(seed).choice(len(A), FIT_ROWS, replace=False))]
    basis = _FITS[name](fit_on, st, components=int(components), seed=int(seed), alpha=alpha)
    if fit_on is not A:
        object.__setattr__(basis, "note", "; ".join(t for t in (basis.note, f"fitted on {FIT_ROWS} of {len(A)} rows")
                                                    if t))
    if not basis.orthogonal and basis.size < A.shape[1]:
        cap = f"{basis.size} of {A.shape[1]} vectors (the 'components' option)"
        object.__setattr__(basis, "note", "; ".join(t for t in (basis.note, cap) if t))
    return basis
