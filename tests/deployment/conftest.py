"""``tests/deployment``: the real deployment of every supported line runs only under ``make test-deployment``.

``test_real_deployment.py`` starts a whole Airflow deployment installed from the built wheels; ``make
test-deployment`` runs it in ``.venv-deploy-<line>`` with ``CARECYCLE_TEST_DEPLOYMENT=1`` and
``--confcutdir=tests/deployment`` (so ``tests/conftest.py``, its throwaway home and its imports of the provider's
source stay out of it). Every other pytest run (``make test`` included) leaves that file out and still runs the rest
of this folder.
"""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("CARECYCLE_TEST_DEPLOYMENT") == "1" else ["test_real_deployment.py"]
