"""The example is a user's test module: tests/test_pytest_plugin.py runs it in its own pytest process.

Collected here, it would deploy into the user's LOCALMAKER_HOME instead of the suite's private one.
"""

collect_ignore = ["test_my_endpoint.py"]
