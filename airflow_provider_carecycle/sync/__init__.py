"""The lead sync: what gets a validated lead to careCycle exactly once and remembers what careCycle holds.

The upload engine and what it keeps while it runs and between runs live here; the lead rules it applies (fields,
validation, rejections) live in :mod:`airflow_provider_carecycle.leads`.
"""
