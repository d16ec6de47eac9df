"""ANN benchmark on REAL trained ALS vectors: recall@100 against exact search, and query time.

Queries are trained member vectors, the database the trained item vectors, exactly what the
service searches (one member per request, one query at a time, top-k by inner product). Random
Gaussian vectors would say nothing about ALS factors (norms that grow with popularity, clusters),
so this never uses them.

    # vectors of a published bundle
    python -m load_tests.bench_ann --bundle mallrec-data/models
    # fit ALS (bare implicit, the training config) on a data folder; factors cached beside it
    python -m load_tests.bench_ann --data mallrec-data/scale-1m-items
    # make the mall first: 1M items
    python -m load_tests.bench_ann --synth mallrec-data/ann-1m --members 1000000 --items 1000000 \\
        --events 20000000

Every candidate index is built, its recall@100 measured on --queries member vectors, and its
single-query latency timed on --timing-queries of them (one thread, as the service calls it),
next to exact search (faiss IndexFlatIP, one query at a time) timed the same way. The same code path
as training (training/index.py: build_index) is measured too, so the trainer's choice is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def fit_factors(data: Path, config: Path | None) -> tuple[np.ndarray, np.ndarray]:
    cache = data / "als_factors.npz"
    if cache.exists():
        z = np.load(cache)
        print(f"factors from {cache}", flush=True)
        return z["items"], z["members"]
    from threadpoolctl import threadpool_limits

    from training.als import make_implicit_model
    from training.config import load_config
    from training.dataset import confidence_matrix
    from training.events import load_dataset

    def find(stem: str) -> Path | None:
        for suffix in (".parquet", ".csv"):
            if (data / f"{stem}{suffix}").exists():
                return data / f"{stem}{suffix}"
        return None

    cfg = load_config(config)
    t = time.perf_counter()
    ds = load_dataset(find("events"), find("items"), find("members"))
    matrix = confidence_matrix(ds, cfg.weighting)
    print(f"matrix {matrix.shape} nnz {matrix.nnz:,} in {time.perf_counter() - t:.1f}s; fitting ALS ...",
          flush=True)
    t = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = make_implicit_model(cfg.als)
        model.fit(matrix, show_progress=False)
    print(f"ALS fit {time.perf_counter() - t:.1f}s", flush=True)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    members = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    np.savez(cache, items=items, members=members)
    return items, members


def bundle_factors(models: Path) -> tuple[np.ndarray, np.ndarray]:
    from service.model_bundle import resolve

    path = resolve(models)
    return np.load(path / "item_factors.npy"), np.load(path / "member_factors.npy")


def timed_search(index, queries: np.ndarray, k: int) -> float:  # type: ignore[no-untyped-def]
    """Median-robust mean ms per single-query search."""
    for q in queries[:10]:
        index.search(q[None, :], k)
    t = time.perf_counter()
    for q in queries:
        index.search(q[None, :], k)
    return (time.perf_counter() - t) / len(queries) * 1000


def numpy_exact_ms(items: np.ndarray, queries: np.ndarray, k: int) -> float:
    t = time.perf_counter()
    for q in queries:
        s = items @ q
        top = np.argpartition(-s, k - 1)[:k]
        top[np.argsort(-s[top])]
    return (time.perf_counter() - t) / len(queries) * 1000


def candidates(n: int, d: int, quick: bool):  # type: ignore[no-untyped-def]
    """(name, builder, [(param label, setter)]) for each index family."""
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    nlist = int(4 * np.sqrt(n))
    out = []

    def hnsw(m: int, efc: int):  # type: ignore[no-untyped-def]
        def build(x: np.ndarray):  # type: ignore[no-untyped-def]
            idx = faiss.IndexHNSWFlat(d, m, ip)
            idx.hnsw.efConstruction = efc
            idx.add(x)
            return idx
        return build

    def set_ef(ef: int):  # type: ignore[no-untyped-def]
        def f(idx):  # type: ignore[no-untyped-def]
            idx.hnsw.efSearch = ef
        return f

    def ivf_flat(x: np.ndarray):  # type: ignore[no-untyped-def]
        idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip)
        idx.train(x[np.random.default_rng(0).choice(len(x), min(len(x), nlist * 64), replace=False)])
        idx.add(x)
        return idx

    def set_nprobe(p: int, kf: float | None = None):  # type: ignore[no-untyped-def]
        def f(idx):  # type: ignore[no-untyped-def]
            faiss.extract_index_ivf(idx).nprobe = p
            if kf is not None:
                idx.k_factor = kf
        return f

    def pqfs(m: int, ivf: int = 0):  # type: ignore[no-untyped-def]
        def build(x: np.ndarray):  # type: ignore[no-untyped-def]
            if ivf:
                base = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(d), d, ivf, m, 4, ip)
            else:
                base = faiss.IndexPQFastScan(d, m, 4, ip)
            sample = x[np.random.default_rng(0).choice(len(x), min(len(x), 200_000), replace=False)]
            base.train(sample)
            idx = faiss.IndexRefineFlat(base)
            idx.add(x)
            return idx
        return build

    def set_kf(kf: float):  # type: ignore[no-untyped-def]
        def f(idx):  # type: ignore[no-untyped-def]
            idx.k_factor = kf
        return f

    kfs = (2, 4, 8, 16) if quick else (2, 4, 8, 16, 32)
    out.append((f"PQ{d // 2}x4 FastScan + exact re-rank (no IVF)", pqfs(d // 2),
                [(f"k_factor {kf}", set_kf(kf)) for kf in kfs]))
    out.append((f"PQ{d // 4}x4 FastScan + exact re-rank (no IVF)", pqfs(d // 4),
                [(f"k_factor {kf}", set_kf(kf)) for kf in kfs]))
    ivf_lists = max(16, int(np.sqrt(n)))
    out.append((f"IVF{ivf_lists}-PQ{d // 2}x4 FastScan (IP) + exact re-rank", pqfs(d // 2, ivf_lists),
                [(f"nprobe {p}, k_factor {kf}", set_nprobe(p, kf))
                 for p in (16, 32, 64, 128) for kf in (8, 16)]))
    out.append((f"IVF{nlist}-Flat (IP)", ivf_flat,
                [(f"nprobe {p}", set_nprobe(p)) for p in (32, 64, 128, 256, 512)]))
    if not quick:
        out.append(("HNSW32-Flat (IP), efConstruction 200", hnsw(32, 200),
                    [(f"efSearch {ef}", set_ef(ef)) for ef in (64, 128, 256, 512, 1024)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path, help="models dir or bundle dir: use its trained factors")
    src.add_argument("--data", type=Path, help="data folder: fit ALS on it (cached in als_factors.npz)")
    src.add_argument("--synth", type=Path, help="make a synthetic mall here first, then fit")
    ap.add_argument("--only-exact", action="store_true", help="skip the FAISS ANN candidates")
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--queries", type=int, default=1000, help="member vectors for recall")
    ap.add_argument("--timing-queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, 
                    help="FAISS threads while timing (the service: 1 query)")
    ap.add_argument("--quick", action="store_true", help="fewer candidates (no HNSW: slow to build)")
    ap.add_argument("--out", type=Path, default=ROOT / "load_tests" / "results")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    import faiss

    from training.config import IndexConfig
    from training.index import build_index, exact_top, recall

    if args.bundle:
        items, members = bundle_factors(args.bundle)
        source = f"bundle {args.bundle}"
    else:
        data = args.data or args.synth
        if args.synth and not (data / "events.parquet").exists():
            from training.synth import generate

            t = time.perf_counter()
            generate(data, members=args.members, items=args.items, events=args.events, fmt="parquet", seed=3)
            print(f"synth {time.perf_counter() - t:.1f}s", flush=True)
        items, members = fit_factors(data, args.config)
        source = f"ALS fitted on {data}"
    items = np.ascontiguousarray(items, dtype=np.float32)
    n, d = items.shape
    rng = np.random.default_rng(1)
    # members the model knows something about (a zero-history member's vector is near 0)
    active = np.flatnonzero(np.linalg.norm(members, axis=1) > 1e-6)
    q_idx = rng.choice(active, min(args.queries, len(active)), replace=False)
    queries = np.ascontiguousarray(members[q_idx], dtype=np.float32)
    tq = queries[: args.timing_queries]
    k = args.k
    norms = np.linalg.norm(items, axis=1)
    print(f"{source}: {n:,} items x {d}, {len(members):,} members; item norm p50 {np.median(norms):.3f} "
          f"p99 {np.percentile(norms, 99):.3f} max {norms.max():.3f}", flush=True)
    t = time.perf_counter()
    truth = exact_top(queries, items, k)
    print(f"exact truth for {len(queries)} queries in {time.perf_counter() - t:.1f}s", flush=True)

    faiss.omp_set_num_threads(args.threads)
    flat = faiss.IndexFlatIP(d)
    flat.add(items)
    exact_ms = timed_search(flat, tq, k)
    np_ms = numpy_exact_ms(items, tq, k)
    print(f"exact: faiss IndexFlatIP {exact_ms:.2f} ms/query, numpy matvec+argpartition {np_ms:.2f} ms/query",
          flush=True)
    rows = [{"index": "exact: faiss IndexFlatIP", "params": "", "build_s": 0.0, "recall_at_100": 1.0,
             "ms_per_query": round(exact_ms, 3), "speedup_vs_exact": 1.0},
            {"index": "exact: numpy matvec + argpartition", "params": "", "build_s": 0.0,
             "recall_at_100": 1.0,
             "ms_per_query": round(np_ms, 3), "speedup_vs_exact": round(exact_ms / np_ms, 2)}]

    def measure(name: str, idx, params: str, build_s: float) -> dict:  # type: ignore[no-untyped-def]
        faiss.omp_set_num_threads(max(2, args.threads))
        _, found = idx.search(queries, k)
        r = recall(found, truth)
        faiss.omp_set_num_threads(args.threads)
        ms = timed_search(idx, tq, k)
        out = {"index": name, "params": params, "build_s": round(build_s, 1), "recall_at_100": round(r, 4),
               "ms_per_query": round(ms, 3), "speedup_vs_exact": round(exact_ms / ms, 2)}
        print(f"  {name:52} {params:26} recall {r:.4f}  {ms:7.3f} ms  x{exact_ms / ms:5.1f}", flush=True)
        return out

    # the service's exact search (service/model.py): items sorted by length, Cauchy-Schwarz stop
    from service.model import NormPrunedSearch

    t = time.perf_counter()
    pruned = NormPrunedSearch(items)
    build_s = time.perf_counter() - t
    found = np.stack([pruned.search(q, k)[0] for q in queries])
    reads = [pruned.search(q, k)[2] for q in tq]
    for q in tq[:10]:
        pruned.search(q, k)
    t = time.perf_counter()
    for q in tq:
        pruned.search(q, k)
    ms = (time.perf_counter() - t) / len(tq) * 1000
    r = recall(found, truth)
    rows.append({"index": "exact, length-pruned (service/model.py NormPrunedSearch)",
                 "params": f"reads {np.mean(reads) / n:.1%} of items (mean)", "build_s": round(build_s, 1),
                 "recall_at_100": round(r, 4), "ms_per_query": round(ms, 3),
                 "speedup_vs_exact": round(exact_ms / ms, 2)})
    print(f"  length-pruned exact: recall {r:.4f} {ms:.3f} ms x{exact_ms / ms:.1f}, reads "
          f"{np.mean(reads) / n:.1%}", flush=True)

    # what the trainer builds (training/index.py, kind auto)
    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    idx, report = build_index(items, members, IndexConfig(exact_below=min(100_000, n)), seed=0)
    note = f"trainer says recall {report.recall_at_100:.3f}, exact scan share {report.exact_scan_share}"
    rows.append(measure(f"training/index.py auto -> {report.kind} (FAISS search)", idx, note,
                        time.perf_counter() - t))
    for name, build, params in ([] if args.only_exact else candidates(n, d, args.quick)):
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        idx = build(items)
        build_s = time.perf_counter() - t
        for label, setter in params:
            setter(idx)
            rows.append(measure(name, idx, label, build_s))
        del idx

    result = {"source": source, "items": n, "dims": d, "members": len(members), "queries": len(queries),
              "timing_queries": len(tq), "k": k, "faiss_threads_timing": args.threads,
              "faiss": faiss.__version__, "machine": f"{os.cpu_count()} cores, shared; load avg "
              f"{os.getloadavg()[0]:.2f}", "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows,
              "command": "python -m load_tests.bench_ann " + " ".join(os.sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"ann-{n // 1000}k{'-' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [f"# ANN on real ALS vectors: {n:,} items x {d} ({source})", "",
             f"{result['date']}, {result['machine']}, faiss {result['faiss']}, {len(queries)} member "
             f"queries for recall@{k}, {len(tq)} single-query searches timed on {args.threads} thread(s)",
             f"command: `{result['command']}`", "",
             "| index | params | build s | recall@100 | ms/query | × faster than exact |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['index']} | {r['params']} | {r['build_s']} | {r['recall_at_100']} | "
              f"{r['ms_per_query']} | {r['speedup_vs_exact']} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
