"""What the tests share: builders of models and graphs, the fuzzing harness."""
