"""Today's slot engine, frozen: the equivalence test runs it beside the columnar engine on the same
model, profile inputs and rules, and both must serve the same items, in the same order, with the
same reasons. Imports point inside this package; it goes once the new engine has replaced it."""
