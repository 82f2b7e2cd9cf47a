"""Suite-wide pytest setup: loads the real-service fixtures (see tests/services_plugin.py).

Services start lazily, so `pytest tests/unit` or `pytest -m "not integration"` needs none.
"""

pytest_plugins = ["tests.services_plugin"]
