"""Re-publish the live bundle with the item index today's trainer would build (same factors).

Training a 20M-event mall takes many minutes; comparing index choices under load only needs the
index rebuilt. This loads MODELS_DIR's current bundle, runs ``training.index.build_index`` on its
trained item and member factors (the bundle's own index config unless --kind says otherwise), and
publishes the result as a new version (the old one stays, as after any publish).

    python -m load_tests.reindex --models mallrec-data/models-1m [--kind auto|flat|ivf|hnsw]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from service import model_bundle as mb
from training.config import IndexConfig
from training.index import build_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--kind", default=None, help="auto, flat, ivf, hnsw (default: the bundle's config)")
    args = ap.parse_args()
    t = time.perf_counter()
    bundle = mb.load(args.models, verify=False, with_index=False)
    cfg = dict(bundle.manifest.get("hyperparameters", {}).get("index", {}))
    if args.kind:
        cfg["kind"] = args.kind
    seed = int(bundle.manifest.get("hyperparameters", {}).get("als", {}).get("seed", 0))
    index, report = build_index(bundle.item_factors, bundle.member_factors, IndexConfig(**cfg), seed=seed)
    print(f"index {report.as_dict()} in {time.perf_counter() - t:.1f}s", flush=True)
    previous = bundle.version
    bundle.manifest.update(version=mb.new_version(), index=report.as_dict(), reindexed_from=previous)
    bundle.manifest.setdefault("metrics", {})["index_recall_at_100"] = round(report.recall_at_100, 4)
    bundle.manifest.pop("files", None)
    bundle.faiss_index = index
    path = mb.publish(bundle, args.models)
    print(f"published {bundle.version} -> {path} (was {previous})")


if __name__ == "__main__":
    main()
