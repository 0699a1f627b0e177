"""Repository tools that are not part of any distribution: ``make demo`` (:mod:`dev.demo`) and the DAG loader it
shares with the tests (:mod:`dev.dag_loader`). They need a clone: the demo runs ``example_dags/``."""

from __future__ import annotations
