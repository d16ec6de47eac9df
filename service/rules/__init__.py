"""Exposure rules: the merchandisers' rules file (TOML, or YAML) -> slot recipes.

Every slot runs its stages in one fixed order; a later stage wins over an earlier one, so the
precedence when rules conflict is the order read backwards (hard filters never give way):

    1. hard filters  built-in (in_stock, on_shelf, bought_recently, just_ordered, page_dedup), then
                     the file's: include / exclude, tier_only, min_stock, bought_recently,
                     shown_today, frequency_cap                      -- never give way
    2. source mix    the slot's sources blended by weight (weights are shares), backfill if short
    3. boosts        boost / bury by attribute (after the recipe's own steps, e.g. query_first)
    4. re-rank       the learned re-ranker, where the slot says ``rerank = true`` (built-in default:
                     check_in and search_box when the bundle has one); boosts are re-applied to it
    5. diversity     at most N per category / brand in the top K    -- gives way to 6, 7
    6. quotas        at least / at most N matching in the top K      -- gives way to 7
    7. pins          item X at position P, within a date range       -- gives way to 1 only

    precedence: hard filters > pins > quotas > diversity > re-rank > boosts

Within a stage rules run in file order (every-slot rules first). A rule that cannot hold says so in
the trace ("'New in front' gave way: only 1 of the 2 items ..."), and a final precedence check
names the later rules that broke a diversity or quota rule. Modules: ``schema`` (the file's
fields), ``document`` (TOML/YAML with lines), ``loader`` + ``checks`` (validation), ``recipe``
(rules -> recipes), ``preview`` (`mallrec rules preview`). The components a rule becomes live beside
the others of their kind: ``service.filters``, ``service.steps``, ``service.positions``,
``service.candidates`` (the ``catalogue`` source); ``service.components`` registers them.
"""

from service.rules.loader import LoadedRules, Problem, RulesError, load_rules

__all__ = ["LoadedRules", "Problem", "RulesError", "load_rules"]
