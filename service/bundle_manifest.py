"""``manifest.json``: the typed description of one bundle, and its reader.

Split from :mod:`service.model_bundle` (which re-exports every name here) so tools that only look
at bundles (``mallrec models``) need not import the arrays, Parquet and FAISS side. A manifest is
validated by the writer before it is written and by every reader before it is trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from service.errors import MallrecError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
#: A version is a folder name: no path separators, no leading dot (those are bundles being written).
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$"

# Numeric arrays, saved as .npy. Name -> (dtype, required).
ARRAYS: dict[str, tuple[str, bool]] = {
    "item_factors": ("float32", True),  # [n_items, f]
    "member_factors": ("float32", True),  # [n_members, f]
    "popularity_global": ("float32", True),  # [n_items] time-decayed weighted interactions
    "popularity_trending": ("float32", True),  # [n_items] recent-window growth score
    "neighbour_items": ("int32", True),  # [n_items, k] item-to-item neighbours (-1 = none)
    "neighbour_scores": ("float32", True),  # [n_items, k] cosine similarity
    "history_indptr": ("int64", True),  # CSR over members: member i owns [indptr[i], indptr[i+1])
    "history_items": ("int32", True),  # item index per history entry
    "history_last_ts": ("int64", True),  # last event time (seconds) per entry
    "history_events": ("uint8", True),  # bit mask of event types seen (EVENT_BIT)
    "history_purchases": ("int32", True),  # purchase count per entry
    "history_first_purchase_ts": ("int64", True),  # first purchase time, -1 when never bought
    # members by id (a stable argsort of member_id; the trainer makes it, else publish): the service's
    # id lookup need not sort a million ids on every swap, beside requests (older bundles still load)
    "member_order": ("int64", False),
    # RP3beta's W ("because you liked X"), CSR over items: item h's arrivals are [indptr[h], indptr[h+1])
    # (at most item_model.k each); absent when the trainer skipped it (or older bundles): "liked" is empty
    "liked_indptr": ("int64", False),  # [n_items + 1]
    "liked_indices": ("int32", False),  # arrival item per entry
    "liked_scores": ("float32", False),  # W[h, j] per entry
}
#: The arrays of one optional model: all of them or none.
LIKED_ARRAYS = ("liked_indptr", "liked_indices", "liked_scores")
ITEMS_TABLE = "items.parquet"  # item_id, category, brand, price, stock, on_shelf, launched_at, tags
MEMBERS_TABLE = "members.parquet"  # member_id, tier, points


class BundleError(MallrecError):
    """A bundle that cannot be served: missing, corrupt or from an unknown schema."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: StrictInt = Field(ge=0)


class RerankerValid(BaseModel):
    """``reranker.valid``: the re-ranker's held-out members, first-stage order against re-ranked, and
    the gate's verdict (training/rerank_gate.py). Bundles from before the gate carry only the NDCG
    figures: every other field is optional."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    groups: StrictInt = Field(0, ge=0)
    labelled_groups: StrictInt | None = Field(None, ge=0)
    first_stage_ndcg: float | None = Field(None, alias="first_stage_ndcg@10")
    rerank_ndcg: float | None = Field(None, alias="rerank_ndcg@10")
    first_stage_hr: float | None = Field(None, alias="first_stage_hr@10")
    rerank_hr: float | None = Field(None, alias="rerank_hr@10")
    ndcg_diff: float | None = Field(None, alias="ndcg@10_diff")
    ndcg_diff_se: float | None = Field(None, alias="ndcg@10_diff_se")
    tolerance: float | None = Field(None, ge=0, le=1)
    shipped: bool | None = None  # None: trained before the gate
    reason: str | None = None  # the verdict with both orders' figures, as `train` printed it


class RerankerSection(BaseModel):
    """``reranker``: the trainer's report on the re-ranker; ``skipped`` says why the bundle has none."""

    model_config = ConfigDict(extra="allow")
    valid: RerankerValid | None = None
    skipped: str | None = None


class ItemModelSection(BaseModel):
    """``item_model``: what the trainer did about RP3beta (training.rp3beta.ItemModelFit.as_dict);
    ``skipped`` says why the bundle has no ``liked_*`` arrays."""

    model_config = ConfigDict(extra="allow")
    fitted: bool = False
    walks: StrictInt = Field(0, ge=0)
    nnz: StrictInt | None = Field(None, ge=0)
    skipped: str | None = None


class Manifest(BaseModel):
    """``manifest.json``'s shape: what a reader must trust before reading a file; the trainer's
    reports ride along as extra keys. A bundle's folder is named ``version``."""

    model_config = ConfigDict(extra="allow")
    schema_version: Literal[1]
    version: str = Field(max_length=200, pattern=VERSION_PATTERN)
    created_at: str
    files: dict[str, FileEntry]
    hyperparameters: dict[str, Any] = {}
    index: dict[str, Any] = {}
    reranker: RerankerSection = RerankerSection()
    item_model: ItemModelSection | None = None  # None: a bundle from before the item model

    @field_validator("files")
    @classmethod
    def _every_file_listed(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        if odd := sorted(n for n in files if "/" in n or "\\" in n or n.startswith(".")):
            raise ValueError(f"file names must be plain names in the bundle folder, not {odd}")
        needed = [f"{a}.npy" for a, (_, required) in ARRAYS.items() if required]
        if missing := [n for n in (*needed, ITEMS_TABLE, MEMBERS_TABLE) if n not in files]:
            raise ValueError(f"no checksum for {', '.join(missing)}")
        return files


def check_manifest(raw: Any, where: str | Path) -> Manifest:
    """``raw`` (a parsed manifest) as a Manifest; BundleError naming every field that is wrong."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where}: manifest is a JSON {type(raw).__name__}, not an object")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{where}: schema_version {raw.get('schema_version')!r}, "
                          f"this mallrec reads {SCHEMA_VERSION}")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'manifest'}: "
                        f"{err['msg'].replace('Value error, ', '')}" for err in e.errors())
        raise BundleError(f"{where}: manifest does not match the bundle schema ({why})") from e


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The manifest as a mapping, once it matches :class:`Manifest` (BundleError otherwise)."""
    path = Path(bundle_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise BundleError(f"{path}: missing manifest") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: manifest is not valid JSON ({e})") from e
    except OSError as e:
        raise BundleError(f"{path}: cannot read the manifest ({e.strerror})") from e
    check_manifest(manifest, path)
    return manifest
