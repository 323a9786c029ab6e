"""The command layer: one module per verb of `detect`, with its flags (``add_arguments``), its
printing and its exit code (``run``). The library below takes settings objects and returns
results; it neither parses arguments nor prints."""
