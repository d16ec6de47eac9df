"""Every component a slot recipe can name, registered in this one place (nothing registers itself
on import). The tables are built on first use, so the component modules, the rules file's schema
and the recipes that name them can import each other's types freely.

    sources   service/candidates/   als, liked, similar_recent, ..., catalogue
    filters   service/filters/      in_stock, on_shelf, ..., include, exclude, frequency_cap
    steps     service/steps/        query_first, rerank, boost, bury
              service/positions/    diversity, quota, pin
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


@functools.cache
def registry() -> dict[str, dict[str, Callable[..., Any]]]:
    """kind (source | filter | step) -> name -> factory (keyword parameters from the spec)."""
    from service.candidates.als import PersonalAls
    from service.candidates.liked import BecauseYouLiked
    from service.candidates.new_launches import NewLaunches
    from service.candidates.popular import Popular, PopularInCategory, Trending
    from service.candidates.query_match import QueryMatch
    from service.candidates.repeat_purchase import RepeatPurchase
    from service.candidates.similar import SimilarToOrder, SimilarToRecent
    from service.filters.bought_recently import NotBoughtRecently
    from service.filters.just_ordered import NotJustOrdered
    from service.filters.on_shelf import OnShelf
    from service.filters.page_dedup import NotOnPage
    from service.filters.stock import InStock
    from service.rules.recipe import rule_components
    from service.steps.query_first import QueryFirst
    from service.steps.rerank import Rerank

    tables: dict[str, dict[str, Callable[..., Any]]] = {
        "source": {c.name: c for c in (PersonalAls, BecauseYouLiked, SimilarToRecent, SimilarToOrder, Popular,
                                       Trending, PopularInCategory, NewLaunches, RepeatPurchase, QueryMatch)},
        "filter": {c.name: c for c in (InStock, OnShelf, NotBoughtRecently, NotJustOrdered, NotOnPage)},
        "step": {c.name: c for c in (QueryFirst, Rerank)},
    }
    for kind, found in rule_components().items():
        tables[kind].update(found)
    return tables


def register(kind: str, factory: Callable[..., Any], name: str) -> None:
    """Make one more component available to recipes by name (a plug-in, a test's fake)."""
    registry()[kind][name] = factory
