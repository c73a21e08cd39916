"""torchrun, tied to the runner: `python -m harness.elastic RUNNER_PID TORCHRUN_ARGS...`.

The torch elastic agent starts and watches a trial's ranks; this entry point first asks Linux
to kill it when the runner dies, so a killed sweep leaves no agent (and, through the ranks'
own death signal, no rank) behind. Everything else is torchrun's own `main`.
"""

from __future__ import annotations

import sys

from torch.distributed.run import main as torchrun_main

from harness.train.worker import die_with_parent

if __name__ == "__main__":
    die_with_parent(int(sys.argv[1]))
    torchrun_main(sys.argv[2:])
