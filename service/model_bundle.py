"""The model bundle: the one contract between the trainer and the service.

A bundle is a directory of plain files (NumPy arrays, Parquet tables, a FAISS index, an optional
ONNX re-ranker) described by ``manifest.json``. The trainer writes it with :func:`publish`; the
service reads it with :func:`load`. Both sides import this module and nothing else of each other.

Layout of ``MODELS_DIR``::

    MODELS_DIR/
      CURRENT                     one line: the version the service should serve
      PINNED                      optional: versions pruning never removes (service.bundle_versions)
      versions/<version>/         one complete bundle (see FILES)
      versions/.incoming-<...>/   a bundle being written (never read)

Publishing writes the whole bundle beside the live ones, fsyncs it, renames the directory into
``versions/`` and only then replaces ``CURRENT`` (``os.replace`` is atomic), so a reader never sees
half a bundle. Every file's SHA-256 is in the manifest; :func:`load` checks them, so a truncated or
corrupt bundle is rejected instead of served. The manifest's shape is one typed model
(:class:`Manifest`, in :mod:`service.bundle_manifest` and re-exported here) that the writer
validates before writing and the reader before trusting it, and factors or scores that are NaN or
infinite are refused on both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from service.bundle_manifest import (  # noqa: F401  (re-exported)
    ARRAYS,
    ITEMS_TABLE,
    LIKED_ARRAYS,
    MANIFEST,
    MEMBERS_TABLE,
    SCHEMA_VERSION,
    VERSION_PATTERN,
    BundleError,
    FileEntry,
    Manifest,
    check_manifest,
    read_manifest,
)
from service.bundle_versions import (  # noqa: F401  (CURRENT_FILE, VERSIONS_DIR re-exported)
    CURRENT_FILE,
    VERSIONS_DIR,
    prune,
    read_pinned,
    replace_file,
)
from service.durable import fsync_dir
from service.ids import column_to_numpy, text_array, unique_text

if TYPE_CHECKING:
    import faiss

#: Event types in the order of their bit in ``history_events`` (bit 0 = view ... bit 4 = purchase).
EVENT_TYPES: tuple[str, ...] = ("view", "click", "fav", "cart", "purchase")
EVENT_BIT = {name: 1 << i for i, name in enumerate(EVENT_TYPES)}

FAISS_INDEX = "items.faiss"
RERANKER = "reranker.onnx"


#: Arrays refused when they hold NaN or infinity: every score a member sees is made from them.
FINITE_ARRAYS = ("item_factors", "member_factors", "popularity_global", "popularity_trending",
                 "neighbour_scores")


def check_finite(name: str, arr: np.ndarray, where: str = "bundle") -> None:
    """BundleError when ``arr`` holds NaN or infinity (a diverged fit must not reach members)."""
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.floating):
        return
    # a float64 sum of float32 values cannot overflow: it is NaN or infinite iff a value is (no copy)
    if a.dtype.itemsize <= 4 and np.isfinite(np.sum(a, dtype=np.float64)):
        return
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise BundleError(f"{where}: {name} has {bad} non-finite value{'s' * (bad != 1)} (NaN or "
                          f"infinite) of {np.asarray(arr).size}: a diverged fit? (lower als.alpha, "
                          f"raise als.regularization)")


@dataclass
class ItemTable:
    """Item attributes the service filters and boosts on (index = internal item index)."""

    item_id: np.ndarray  # str
    category: np.ndarray  # str ('' = unknown)
    brand: np.ndarray  # str ('' = unknown)
    price: np.ndarray  # float64 (nan = unknown)
    stock: np.ndarray  # int64 (-1 = unknown, treated as in stock)
    on_shelf: np.ndarray  # bool (unknown = True)
    launched_at: np.ndarray  # int64 seconds (-1 = unknown)
    tags: np.ndarray  # str, space separated

    def __len__(self) -> int:
        return len(self.item_id)

    def to_arrow(self) -> pa.Table:
        return pa.table({name: getattr(self, name) for name in ITEM_COLUMNS})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> ItemTable:
        cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in ITEM_COLUMNS}
        cols["on_shelf"] = cols["on_shelf"].astype(bool)
        return cls(**cols)


ITEM_COLUMNS = ("item_id", "category", "brand", "price", "stock", "on_shelf", "launched_at", "tags")


@dataclass
class MemberTable:
    member_id: np.ndarray  # str
    tier: np.ndarray  # str ('' = unknown)
    points: np.ndarray  # float64 (nan = unknown)
    # (distinct tiers sorted, each member's position in them) when the loader got them for free
    tier_codes: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.member_id)


@dataclass
class Bundle:
    """Everything one model version holds. Arrays are read-only once loaded."""

    manifest: dict[str, Any]
    items: ItemTable
    members: MemberTable
    arrays: dict[str, np.ndarray]
    faiss_index: faiss.Index | None = None  # the service searches it; the trainer builds it
    reranker_onnx: bytes | None = None
    path: Path | None = None
    _item_index: dict[str, int] | None = field(default=None, repr=False)
    _member_index: dict[str, int] | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def __getattr__(self, name: str) -> np.ndarray:
        # bundle.item_factors etc.: the arrays read like attributes.
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def item_index(self) -> dict[str, int]:
        if self._item_index is None:  # in slices: the bundle loads beside a serving event loop
            ids, index = self.items.item_id, dict[str, int]()
            for start in range(0, len(ids), 8192):
                chunk = ids[start:start + 8192].tolist()
                index.update(zip(map(str, chunk), range(start, start + len(chunk)), strict=True))
            self._item_index = index
        return self._item_index

    @property
    def member_index(self) -> dict[str, int]:
        if self._member_index is None:
            self._member_index = {str(k): i for i, k in enumerate(self.members.member_id.tolist())}
        return self._member_index

    def history(self, member: int) -> slice:
        """Slice of the history_* arrays that belongs to member index ``member``."""
        return slice(int(self.history_indptr[member]), int(self.history_indptr[member + 1]))

    def validate(self) -> None:
        """Check shapes agree; raise BundleError naming what does not."""
        n_items, n_members = len(self.items), len(self.members)
        a = self.arrays
        checks = [
            ("item_factors rows", a["item_factors"].shape[0], n_items),
            ("member_factors rows", a["member_factors"].shape[0], n_members),
            ("factor dims", a["member_factors"].shape[1], a["item_factors"].shape[1]),
            ("popularity_global", len(a["popularity_global"]), n_items),
            ("popularity_trending", len(a["popularity_trending"]), n_items),
            ("neighbour_items rows", a["neighbour_items"].shape[0], n_items),
            ("neighbour_scores shape", a["neighbour_scores"].shape, a["neighbour_items"].shape),
            ("history_indptr", len(a["history_indptr"]), n_members + 1),
        ]
        n_hist = int(a["history_indptr"][-1]) if len(a["history_indptr"]) else 0
        for name in ("history_items", "history_last_ts", "history_events", "history_purchases",
                     "history_first_purchase_ts"):
            checks.append((name, len(a[name]), n_hist))
        for what, got, want in checks:
            if got != want:
                raise BundleError(f"bundle {self.version}: {what} is {got}, expected {want}")
        if self.faiss_index is not None and self.faiss_index.ntotal != n_items:
            raise BundleError(f"bundle {self.version}: FAISS index holds {self.faiss_index.ntotal} "
                              f"vectors for {n_items} items")
        for name in FINITE_ARRAYS:
            check_finite(name, a[name], f"bundle {self.version}")
        check_liked(a, n_items, f"bundle {self.version}")

    @property
    def has_liked(self) -> bool:
        """Whether the bundle carries RP3beta's W (the "liked" source; older bundles do not)."""
        return "liked_indptr" in self.arrays


def liked_arrays(w: Any) -> dict[str, np.ndarray]:
    """The ``liked_*`` arrays of an items x items CSR matrix ``w`` (RP3beta's W; scipy's csr_matrix,
    or anything with its ``indptr``, ``indices`` and ``data``)."""
    return {"liked_indptr": np.asarray(w.indptr, dtype=np.int64),
            "liked_indices": np.asarray(w.indices, dtype=np.int32),
            "liked_scores": np.asarray(w.data, dtype=np.float32)}


def check_liked(a: dict[str, np.ndarray], n_items: int, where: str) -> None:
    """The ``liked_*`` arrays: all or none, a CSR over the items whose arrivals are known items and
    whose scores are finite (BundleError naming what is wrong)."""
    have = [n for n in LIKED_ARRAYS if n in a]
    if not have:
        return
    if len(have) != len(LIKED_ARRAYS):
        raise BundleError(f"{where}: has {', '.join(have)} without "
                          f"{', '.join(n for n in LIKED_ARRAYS if n not in a)}")
    indptr, indices, scores = (a[n] for n in LIKED_ARRAYS)
    if indptr.ndim != 1 or len(indptr) != n_items + 1:
        raise BundleError(f"{where}: liked_indptr has shape {indptr.shape}, expected ({n_items + 1},)")
    if indices.ndim != 1 or scores.shape != indices.shape:
        raise BundleError(f"{where}: liked_indices {indices.shape} and liked_scores {scores.shape} "
                          f"must be one-dimensional and of one length")
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise BundleError(f"{where}: liked_indptr is not a CSR row pointer over {len(indices)} entries "
                          f"(starts at 0, never falls, ends at the entry count)")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_items):
        raise BundleError(f"{where}: liked_indices holds item indices outside [0, {n_items})")
    check_finite("liked_scores", scores, where)


# --------------------------------------------------------------------------- writing


def new_version() -> str:
    """Sortable, unique version id: UTC time to the millisecond plus a short random suffix."""
    now = time.time()
    return (time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z-"
            + uuid.uuid4().hex[:6])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _seal(path: Path) -> dict[str, Any]:
    """fsync a written file; its manifest entry (sha256 and size)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}



def _write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def publish(bundle: Bundle, models_dir: str | Path, keep: int = 5,
            notify: Callable[[str], object] | None = None) -> Path:
    """Write ``bundle`` into MODELS_DIR atomically and point CURRENT at it.

    Returns the published directory. Older versions beyond the newest ``keep`` unpinned ones are
    removed: never the one CURRENT pointed to before (a service may still read it) nor a pinned one
    (``PINNED``: an experiment arm may serve it). ``notify`` hears of pinned versions kept that
    ``keep`` alone would have removed.
    """
    import faiss  # the trainer has it; imported here so load() users without an index skip it

    models_dir = Path(models_dir)
    versions = models_dir / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    version = bundle.manifest.get("version") or new_version()
    bundle.manifest["version"] = version
    bundle.manifest["schema_version"] = SCHEMA_VERSION
    bundle.manifest.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if not isinstance(version, str) or not re.fullmatch(VERSION_PATTERN, version):
        raise BundleError(f"publish: version {version!r} is not a folder name ({VERSION_PATTERN})")
    bundle.validate()

    tmp = versions / f".incoming-{version}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    if "member_order" not in bundle.arrays:
        bundle.arrays["member_order"] = member_order(bundle.members.member_id)
    try:
        # each file is fsynced and hashed on a second thread while the next one is written, so a
        # large bundle's hashing does not wait until every write is done
        with ThreadPoolExecutor(1) as sealer:
            sealed: dict[str, Future[dict[str, Any]]] = {}

            def write(name: str, fill: Callable[[BinaryIO], object]) -> None:
                with open(tmp / name, "wb") as f:
                    fill(f)
                sealed[name] = sealer.submit(_seal, tmp / name)

            for name, (dtype, required) in ARRAYS.items():
                if name not in bundle.arrays:
                    if required:
                        raise BundleError(f"bundle is missing array {name!r}")
                    continue
                arr = np.ascontiguousarray(bundle.arrays[name], dtype=dtype)
                write(f"{name}.npy", partial(np.save, arr=arr, allow_pickle=False))
            write(ITEMS_TABLE, lambda f: pq.write_table(bundle.items.to_arrow(), f))
            members = pa.table({"member_id": bundle.members.member_id, "tier": bundle.members.tier,
                                "points": bundle.members.points})
            write(MEMBERS_TABLE, lambda f: pq.write_table(members, f))
            if bundle.faiss_index is not None:
                faiss.write_index(bundle.faiss_index, str(tmp / FAISS_INDEX))
                sealed[FAISS_INDEX] = sealer.submit(_seal, tmp / FAISS_INDEX)
            if (onnx := bundle.reranker_onnx) is not None:
                write(RERANKER, lambda f: f.write(onnx))
            bundle.manifest["files"] = {name: sealed[name].result() for name in sorted(sealed)}
        check_manifest(bundle.manifest, f"publish {version}")
        manifest_bytes = json.dumps(bundle.manifest, indent=2, sort_keys=True, default=_json_default)
        _write_file(tmp / MANIFEST, lambda f: f.write(manifest_bytes.encode()))
        fsync_dir(tmp)
        final = versions / version
        os.rename(tmp, final)
        fsync_dir(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = current_version(models_dir)
    set_current(models_dir, version)
    spared = prune(versions, keep=keep, protect={version, previous}, pinned=set(read_pinned(models_dir)))
    if spared and notify is not None:
        notify(f"kept pinned version{'s' * (len(spared) != 1)} {', '.join(spared)} beyond --keep {keep} "
               f"(`mallrec models unpin` lets one go)")
    bundle.path = final
    return final


def set_current(models_dir: str | Path, version: str) -> None:
    """Point CURRENT at ``version`` atomically and durably (temp file, fsync, rename, fsync the
    folder): a reader sees the old line or the new one, and a crash cannot leave it empty."""
    if not re.fullmatch(VERSION_PATTERN, version):
        raise BundleError(f"{version!r} is not a version (a folder name: {VERSION_PATTERN})")
    replace_file(Path(models_dir), CURRENT_FILE, f"{version}\n")


def member_order(member_ids: np.ndarray) -> np.ndarray:
    """The bundle's ``member_order`` array: the member ids' stable argsort (``publish`` makes it when
    the trainer has not already, e.g. beside its ALS fit)."""
    return np.argsort(text_array(member_ids), kind="stable")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------- reading


def current_version(models_dir: str | Path) -> str | None:
    """The version CURRENT points to, or None when nothing is published yet."""
    try:
        text = (Path(models_dir) / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def resolve(models_dir_or_bundle: str | Path) -> Path:
    """Accept MODELS_DIR (follow CURRENT) or a bundle directory itself; BundleError saying what is
    missing (nothing published, an empty CURRENT, the version CURRENT names, a manifest)."""
    path = Path(models_dir_or_bundle)
    if (path / MANIFEST).exists():
        return path
    if (path / CURRENT_FILE).exists():
        version = current_version(path)
        if version is None or not re.fullmatch(VERSION_PATTERN, version):
            raise BundleError(f"{path / CURRENT_FILE} is {'empty' if version is None else repr(version)}: "
                              f"it should name a version (a folder) in {path / VERSIONS_DIR}")
        return path / VERSIONS_DIR / version
    if path.parent.name == VERSIONS_DIR:  # the folder of one version (what the reload watcher loads)
        raise _missing_version(path) if not path.is_dir() else BundleError(f"{path}: missing manifest")
    raise BundleError(f"no model published in {path} (no {CURRENT_FILE} file): run `mallrec train`")


def _missing_version(path: Path) -> BundleError:
    return BundleError(f"{path} does not exist: {CURRENT_FILE} names version {path.name!r}, which is not "
                       f"in {path.parent} (removed, or not copied yet?)")


def load(models_dir_or_bundle: str | Path, verify: bool = True, with_index: bool = True) -> Bundle:
    """Load and validate a bundle; raise BundleError (never serve half a model)."""
    path = resolve(models_dir_or_bundle)
    if not path.is_dir():
        raise _missing_version(path)
    manifest = read_manifest(path)
    if path.parent.name == VERSIONS_DIR and manifest["version"] != path.name:
        raise BundleError(f"{path}: the manifest says version {manifest['version']!r}, the folder is "
                          f"{path.name!r} (a bundle copied under a new name? publish it with "
                          f"`mallrec train`, or make the manifest's version the folder's name)")
    files: dict[str, dict[str, Any]] = manifest["files"]
    if verify:
        for name, meta in files.items():
            f = path / name
            if not f.exists():
                raise BundleError(f"{path}: file {name} is missing")
            if f.stat().st_size != meta["bytes"] or _sha256(f) != meta["sha256"]:
                raise BundleError(f"{path}: file {name} is corrupt (checksum mismatch)")
    try:
        arrays = {}
        for name, (_dtype, required) in ARRAYS.items():
            f = path / f"{name}.npy"
            if f.exists():
                arrays[name] = np.load(f, allow_pickle=False)
                arrays[name].setflags(write=False)
            elif required:
                raise BundleError(f"{path}: array {name} is missing")
        items = ItemTable.from_arrow(pq.read_table(path / ITEMS_TABLE))
        members = _read_members(path / MEMBERS_TABLE)
        index = None
        if with_index and (path / FAISS_INDEX).exists():
            import faiss

            index = faiss.read_index(str(path / FAISS_INDEX))
            _apply_search_params(index, manifest.get("index", {}))
        onnx = (path / RERANKER).read_bytes() if (path / RERANKER).exists() else None
    except BundleError:
        raise
    except Exception as e:  # a damaged file surfaces as many kinds of error
        raise BundleError(f"{path}: cannot read bundle ({type(e).__name__}: {e})") from e
    bundle = Bundle(manifest=manifest, items=items, members=members, arrays=arrays,
                    faiss_index=index, reranker_onnx=onnx, path=path)
    bundle.validate()
    return bundle


def _read_members(path: Path) -> MemberTable:
    """The members table, its columns converted in chunks (a swap must not stall the loop). Tiers
    are read as Parquet's dictionary codes: the distinct tiers come without sorting a million
    strings (0.2 s of a core, beside requests) and the re-ranker's tier ranks use them."""
    mt = pq.read_table(path, read_dictionary=["tier"]).unify_dictionaries().combine_chunks()
    ids, points = column_to_numpy(mt.column("member_id")), column_to_numpy(mt.column("points"))
    tier = mt.column("tier").chunk(0) if mt.num_rows else None
    if tier is None or tier.null_count or not pa.types.is_dictionary(tier.type):
        return MemberTable(ids, column_to_numpy(mt.column("tier").cast(pa.string())), points)
    names, remap = unique_text(column_to_numpy(tier.dictionary))  # a few names
    codes = remap[tier.indices.to_numpy()]
    return MemberTable(ids, names[codes], points, (names, codes))


def _apply_search_params(index: faiss.Index, meta: dict[str, Any]) -> None:
    """Search-time parameters are not stored in the FAISS file; the manifest carries them."""
    import faiss

    if meta.get("kind") == "ivf" and meta.get("nprobe"):
        faiss.extract_index_ivf(index).nprobe = int(meta["nprobe"])
    elif meta.get("kind") == "hnsw" and meta.get("nprobe"):
        assert isinstance(index, faiss.IndexHNSW)  # read_index returns the concrete class
        index.hnsw.efSearch = int(meta["nprobe"])
