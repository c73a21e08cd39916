"""Suites: several scenarios (each with overrides) and checks, run into one results database,
one report per scenario and an index (`harness suite FILE`, files in scenarios/suites/).

    schema   the suite file (pydantic, strict)
    loader   read it, load every scenario entry with its overrides (and its smoke form)
    devices  the device a plan is for: this machine's, or an assumed one (--assume-device)
    estimate a trial's FLOPs and seconds (pure arithmetic, assumptions named)
    costs    fixed costs measured in a results database, else assumed
    plan     --dry-run: planned trials, estimates, the total
    index    the suite's index.html and index.md
    command  the subcommand
"""
