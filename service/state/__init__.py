"""Online state: what changed since the model was trained (recent events, today's impressions).

``port.StateStore`` is what the service needs; ``redis_store`` is the production adapter,
``memory`` a fake for tests and offline previews, ``embedded`` starts a local Redis for demos.
"""
