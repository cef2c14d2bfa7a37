"""What the tests share: builders of models and graphs, oracles, the fuzzing harness.

Test modules import from here (``pythonpath = ["tests"]`` in pyproject.toml), never from each other.
"""
