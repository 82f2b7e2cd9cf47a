"""Suite-wide pytest setup: loads the real-service fixtures (see tests/services_plugin.py).

Services start lazily, so `pytest tests/unit` or `pytest -m "not integration"` needs none.
"""

# The secret grep over every test's captured output and test-artifacts/ (issue 15, item 4).
pytest_plugins = ["tests.services_plugin", "tests.security.leak_plugin"]
