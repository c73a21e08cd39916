"""Procurement: one scenario on several machines side by side, $ per million tokens, and the
projected time and cost of training a large model on each (`harness procure`).

Modules: prices (the prices file), compare (machines side by side), targets and projection
(training a large model), render, arguments and command (the command line)."""
