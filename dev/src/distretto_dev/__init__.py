"""Development and test tools: never a dependency of a service's runtime.

``kafka_runner`` (the embedded Kafka of ``make up`` and the tests), ``testing`` (the pytest
plugin and helpers), ``authz_matrix`` (the authorisation-matrix walker), ``catcher`` (the
mail catcher of ``make up``) and ``alert_receiver`` (the local Alertmanager receiver).
"""
