"""The polytope lens paper's three predictions, measured, and the Hanin-Rolnick scaling law.

Black, Sharkey et al. (2022), "Interpreting Neural Networks through the Polytope Lens", predict:

1. **Monosemantic polytopes.** Inputs grouped by their activation region (exact pattern, or clusters
   of patterns under Hamming/Jaccard distance) are purer in class than the top-activating inputs of
   single neurons or of principal directions.
2. **Boundary density.** Region boundaries are densest where the meaning (the output) changes:
   along interpolation paths between test images, boundaries crossed per unit length rise with the
   change of the softmax.
3. **Scaling.** Scaling a hidden activation vector by alpha, its direction fixed, changes what later
   layers see: the prediction changes where the later layers' pattern changes.

Every verdict follows a rule stated next to it (:data:`RULES`); the measured numbers and the rule
decide, whatever they turn out to be. Hanin and Rolnick (2019): at initialisation the number of
regions along a line grows about linearly with the number of neurons (:func:`scaling_law`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.lenses.regions.patterns import bits_of, group, hamming, is_piecewise_linear, jaccard, patterns

__all__ = ["RULES", "boundary_density", "monosemanticity", "scaling", "scaling_law", "verdict_text"]

Array = np.ndarray

RULES = {
    "monosemantic": ("supported when the purity of pattern clusters (Hamming, as many clusters as top sets) exceeds "
                     "both the mean purity of single neurons' and of principal directions' top-activating sets by "
                     "at least 0.05; not supported when it is below both; mixed otherwise"),
    "boundary_density": ("supported when the pooled Spearman correlation between boundaries crossed per unit length "
                         "and the softmax change (KL) per unit length is above 0.3 with p < 0.01 and boundaries are "
                         "denser next to class switches than elsewhere; not supported when the correlation is below "
                         "0.1; mixed otherwise"),
    "scaling": ("supported when a prediction change comes with a change of the later layers' pattern at least twice "
                "as often as a step without a prediction change does, and no prediction changes without a "
                "pattern change occur more than a quarter of the time; not supported below 1.2 times; mixed otherwise"),
}


def _purity(labels: Array, groups: Array, n_classes: int) -> tuple[float, float]:
    """Size-weighted mean class purity and entropy (bits) of the groups of ``labels``."""
    pur, ent, n = 0.0, 0.0, len(labels)
    for g in np.unique(groups):
        lab = labels[groups == g]
        p = np.bincount(lab, minlength=n_classes) / len(lab)
        pur += len(lab) * p.max()
        nz = p[p > 0]
        ent += len(lab) * float(-(nz * np.log2(nz)).sum())
    return pur / n, ent / n


def _top_purity(scores: Array, y: Array, m: int, n_classes: int) -> Array:
    """Purity of the top-``m`` inputs of each column of ``scores`` (N, K)."""
    out = []
    for k in range(scores.shape[1]):
        idx = np.argsort(-scores[:, k], kind="stable")[:m]
        out.append(np.bincount(y[idx], minlength=n_classes).max() / m)
    return np.array(out)


def _clusters(bits: Array, k: int, metric: str) -> Array:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(bits)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    D = hamming(bits) if metric == "hamming" else jaccard(bits)
    D = 0.5 * (D + D.T)
    np.fill_diagonal(D, 0.0)
    Z = linkage(squareform(D, checks=False), method="average")
    return fcluster(Z, t=min(k, n), criterion="maxclust").astype(np.int64)


def monosemanticity(net, x: Array, y: Array, convention: str = "sign", top: int | None = None) -> dict:
    """Prediction 1: class purity and entropy of the inputs grouped by exact pattern and by clusters of
    patterns, against the purity of each neuron's and each principal direction's top-activating sets
    (``top`` inputs each, default N / 10). A control: the same exact groups with shuffled labels."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(max(net.n_classes, y.max() + 1))
    bits = patterns(net, x, convention)
    ps = group(bits)
    exact_p, exact_e = _purity(y, ps.inverse, n_classes)
    shared = ps.counts[ps.inverse] >= 2
    shared_p = _purity(y[shared], ps.inverse[shared], n_classes)[0] if shared.any() else float("nan")
    rng = np.random.default_rng(0)
    shuffled = float(np.mean([_purity(rng.permutation(y), ps.inverse, n_classes)[0] for _ in range(5)]))
    m = top or max(5, len(x) // 10)
    k = max(2, len(x) // m)
    ham = _clusters(bits, k, "hamming")
    jac = _clusters(bits, k, "jaccard")
    ham_p, ham_e = _purity(y, ham, n_classes)
    jac_p, jac_e = _purity(y, jac, n_classes)
    fp = net.forward(x)
    post = np.concatenate(fp.post, axis=1)
    neuron_p = _top_purity(post, y, m, n_classes)
    dirs = []
    for z in fp.post:
        zc = z - z.mean(axis=0)
        _, _, Vt = np.linalg.svd(zc, full_matrices=False)
        proj = zc @ Vt.T
        dirs.append(np.concatenate([proj, -proj], axis=1))  # both ends of each principal direction
    pca_p = _top_purity(np.concatenate(dirs, axis=1), y, m, n_classes)
    base = max(float(neuron_p.mean()), float(pca_p.mean()))
    if ham_p >= base + 0.05:
        verdict = "supported"
    elif ham_p < min(float(neuron_p.mean()), float(pca_p.mean())):
        verdict = "not supported"
    else:
        verdict = "mixed"
    return {"n": int(len(x)), "convention": convention, "distinct_patterns": int(len(ps.counts)),
            "singletons": int(np.sum(ps.counts == 1)),
            "exact": {"purity": exact_p, "entropy": exact_e, "purity_shared": shared_p, "shuffled_purity": shuffled},
            "hamming_clusters": {"k": k, "purity": ham_p, "entropy": ham_e},
            "jaccard_clusters": {"k": k, "purity": jac_p, "entropy": jac_e},
            "top": m, "neuron_purity": neuron_p.tolist(), "neuron_mean": float(neuron_p.mean()),
            "direction_purity": pca_p.tolist(), "direction_mean": float(pca_p.mean()),
            "verdict": verdict, "rule": RULES["monosemantic"]}


def _pairs(y: Array, n: int, same: bool, rng) -> list[tuple[int, int]]:
    out, tries = [], 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        i, j = rng.integers(0, len(y), 2)
        if i != j and (y[i] == y[j]) == same:
            out.append((int(i), int(j)))
    return out


def boundary_density(net, x: Array, y: Array, pairs: int = 20, bins: int = 40, convention: str = "sign",
                     seed: int = 0) -> dict:
    """Prediction 2: along ``pairs`` same-class and ``pairs`` different-class interpolation paths, the
    boundaries crossed per unit length in each of ``bins`` equal bins against the softmax change (KL
    between the softmaxes at the bin's ends, per unit length) and class switches."""
    from scipy.special import softmax

    from scipy.stats import spearmanr

    from polylens.lenses.regions.partition import segment, segment_sampled

    rng = np.random.default_rng(seed)
    exact = is_piecewise_linear(net) and convention == "sign"
    rows = []  # (kind, density, kl, switch)
    examples = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    for kind, same in (("same", True), ("different", False)):
        for i, j in _pairs(y, pairs, same, rng):
            seg = segment(net, x[i], x[j]) if exact else segment_sampled(net, x[i], x[j], convention, n=801)
            length = float(np.linalg.norm(x[j] - x[i]))
            counts = np.histogram(seg.crossings, bins=edges)[0]
            fine = np.linspace(0, 1, bins * 8 + 1)
            pr = softmax(net(x[i][None] + fine[:, None] * (x[j] - x[i])[None]), axis=1)
            kl_steps = np.sum(pr[1:] * (np.log(pr[1:] + 1e-300) - np.log(pr[:-1] + 1e-300)), axis=1)
            kl = kl_steps.reshape(bins, 8).sum(axis=1)
            cls = pr.argmax(axis=1)
            switch = (cls[1:] != cls[:-1]).reshape(bins, 8).any(axis=1)
            w = length / bins
            for b in range(bins):
                rows.append((kind, counts[b] / w, kl[b] / w, bool(switch[b])))
            if sum(e["kind"] == kind for e in examples) < 2:
                examples.append({"pair": [i, j], "kind": kind, "crossings": seg.crossings.tolist(),
                                 "t": fine.tolist(), "kl_steps": kl_steps.tolist(), "class": cls.tolist()})
    dens = np.array([r[1] for r in rows])
    kls = np.array([r[2] for r in rows])
    sw = np.array([r[3] for r in rows])
    kind = np.array([r[0] for r in rows])
    rho, p = spearmanr(dens, kls) if len(rows) > 2 and dens.std() > 0 and kls.std() > 0 else (float("nan"), 1.0)
    out_kind = {}
    for k in ("same", "different"):
        sel = kind == k
        if sel.sum() > 2 and dens[sel].std() > 0 and kls[sel].std() > 0:
            r2, p2 = spearmanr(dens[sel], kls[sel])
        else:
            r2, p2 = float("nan"), 1.0
        out_kind[k] = {"rho": float(r2), "p": float(p2), "mean_density": float(dens[sel].mean()) if sel.any() else 0.0}
    at_switch = float(dens[sw].mean()) if sw.any() else float("nan")
    elsewhere = float(dens[~sw].mean()) if (~sw).any() else float("nan")
    rho = float(rho)
    if rho > 0.3 and p < 0.01 and (np.isnan(at_switch) or at_switch > elsewhere):
        verdict = "supported"
    elif not rho >= 0.1:
        verdict = "not supported"
    else:
        verdict = "mixed"
    return {"pairs": pairs, "bins": bins, "exact": exact, "convention": convention, "rho": rho, "p": float(p),
            "by_kind": out_kind, "density_at_switch": at_switch, "density_elsewhere": elsewhere,
            "n_switch_bins": int(sw.sum()), "density": dens.tolist(), "kl": kls.tolist(),
            "switch": sw.tolist(), "kind": kind.tolist(), "examples": examples,
            "verdict": verdict, "rule": RULES["boundary_density"]}


def _run_from(net, layer: int, z: Array, convention: str) -> tuple[Array, Array]:
    """From post-activations ``z`` of hidden layer ``layer`` (1-based): the patterns of the later hidden
    layers and the logits."""
    bits = []
    for l in range(layer, len(net.activations)):
        a = net.layers[l](z)
        bits.append(bits_of(a, convention))
        z = net.activations[l](a)
    logits = net.layers[-1](z)
    return (np.concatenate(bits, axis=-1) if bits else np.zeros(z.shape[:-1] + (0,), bool)), logits


def scaling(net, x: Array, layer: int = 1, alphas: Array | None = None, convention: str = "sign") -> dict:
    """Prediction 3: scale the post-activation vector of hidden ``layer`` of each input by alpha (its
    direction fixed) and follow the later layers' pattern and the prediction as alpha moves over
    [0, 3]: how often a step of alpha that changes the prediction also changes the later pattern."""
    alphas = np.linspace(0.0, 3.0, 121) if alphas is None else np.asarray(alphas, dtype=np.float64)
    fp = net.forward(np.asarray(x, dtype=np.float64))
    z = fp.post[layer - 1]
    later_bits, preds = [], []
    for a in alphas:
        b, lg = _run_from(net, layer, a * z, convention)
        later_bits.append(b)
        preds.append(lg.argmax(axis=1))
    B = np.stack(later_bits)  # (A, N, H')
    P = np.stack(preds)  # (A, N)
    i1 = int(np.argmin(np.abs(alphas - 1.0)))
    pat_change = np.any(B[1:] != B[:-1], axis=2)  # (A-1, N)
    pred_change = P[1:] != P[:-1]
    n_pred = int(pred_change.sum())
    with_pat = int((pred_change & pat_change).sum())
    p_given_pred = with_pat / n_pred if n_pred else float("nan")
    steady = ~pred_change
    p_given_steady = float((pat_change & steady).sum() / max(steady.sum(), 1))
    ratio = p_given_pred / p_given_steady if n_pred and p_given_steady > 0 else (float("inf") if n_pred else float("nan"))
    frac_pat = np.mean(np.any(B != B[i1][None], axis=2), axis=1)
    frac_pred = np.mean(P != P[i1][None], axis=1)
    if n_pred == 0:
        verdict = "not measured"
    elif ratio >= 2 and (1 - p_given_pred) <= 0.25:
        verdict = "supported"
    elif ratio < 1.2:
        verdict = "not supported"
    else:
        verdict = "mixed"
    return {"layer": layer, "alphas": alphas.tolist(), "n": int(z.shape[0]), "convention": convention,
            "pattern_changed": frac_pat.tolist(), "prediction_changed": frac_pred.tolist(),
            "prediction_steps": n_pred, "with_pattern_change": with_pat, "p_pattern_given_prediction": p_given_pred,
            "p_pattern_given_steady": p_given_steady, "ratio": float(ratio),
            "verdict": verdict, "rule": RULES["scaling"]}


def scaling_law(widths=(4, 8, 16, 32, 64), depth: int = 2, d: int = 49, nets: int = 5, lines: int = 10,
                seed: int = 0) -> dict:
    """Hanin and Rolnick (2019): at initialisation (He normal weights, zero biases plus a small spread)
    the number of regions along a line grows about linearly with the number of neurons. Counts exact
    crossings on random segments of length 1 (through the box centre) of random ReLU networks of each
    width (``depth`` hidden layers) and fits log(crossings) against log(neurons)."""
    from polylens.lenses.regions.partition import segment
    from polylens.nn import Network

    rng = np.random.default_rng(seed)
    means = []
    for w in widths:
        counts = []
        for _ in range(nets):
            sizes = [d] + [w] * depth + [10]
            Ws = [rng.normal(0, np.sqrt(2.0 / i), (o, i)) for i, o in zip(sizes, sizes[1:])]
            bs = [rng.normal(0, 0.1, o) for o in sizes[1:]]
            net = Network.from_arrays(Ws, bs, "relu")
            for _ in range(lines):
                u = rng.normal(size=d)
                u /= np.linalg.norm(u)
                c = np.full(d, 0.5)
                counts.append(len(segment(net, c - 0.5 * u, c + 0.5 * u).crossings))
        means.append(float(np.mean(counts)))
    neurons = np.array(widths, dtype=np.float64) * depth
    m = np.array(means)
    slope = float(np.polyfit(np.log(neurons), np.log(np.maximum(m, 1e-9)), 1)[0])
    per = (m / neurons).tolist()
    return {"widths": list(widths), "depth": depth, "neurons": neurons.tolist(), "mean_crossings": means,
            "per_neuron": per, "loglog_slope": slope, "linear": bool(0.75 <= slope <= 1.25)}


def verdict_text(v: str) -> str:
    return {"supported": "supported", "not supported": "not supported", "mixed": "mixed"}.get(v, v)
