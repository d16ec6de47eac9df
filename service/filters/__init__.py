"""Filters: one file each; ``keep(q, items) -> bool array`` says which candidates may stay.

Vectorised over the item indices of all candidates at once; what a filter removes is in the trace
under its name.
"""
