"""Regressions: one run against another (`harness compare`), and a metric over many runs
(`harness history`), each judged by per-metric rules that say which way is worse and by how
much a change must exceed the noise to count."""
