"""Progress of a sweep: a rich progress bar over trials and over the steps of the current one;
in quiet mode (CI logs) one plain line per finished trial."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.spec import TrialResult
from harness.text import printable

STATUS_STYLE = {"ok": "green", "skipped": "yellow", "diverged": "magenta"}


# what the one line after each trial shows, where the trial measured it
HEADLINE = (("tokens_per_s", "{:,.0f} tok/s"), ("prefill_tokens_per_s", "prefill {:,.0f} tok/s"),
            ("decode_tokens_per_s", "decode {:,.0f} tok/s"), ("weight_bytes", "weights {:,.0f} B"),
            ("eval_loss", "eval loss {:.3f}"), ("tokens_to_target", "target at {:,.0f} tokens"))


class SweepProgress:
    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._bar: Progress | None = None
        self._done = 0
        self._total = 0

    def __enter__(self) -> SweepProgress:
        if not self.quiet:
            self._bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                 transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start_sweep(self, total: int, already_done: int = 0) -> None:
        self._total, self._done = total, already_done
        if already_done:
            self._print(f"resuming: {already_done} of {total} trials already stored")
        if self._bar is not None:
            self._trials = self._bar.add_task("trials", total=total, completed=already_done)
            self._steps = self._bar.add_task("steps", total=1, visible=False)

    def start_trial(self, name: str, steps: int) -> None:
        if self._bar is not None:
            self._bar.update(self._steps, description=f"  {printable(name)}", completed=0, total=steps,
                             visible=True)

    def step(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._steps, completed=done, total=total)

    def end_trial(self, name: str, result: TrialResult) -> None:
        self._done += 1
        status = result.status
        summary = f"[{self._done}/{self._total}] {name}: {status}"
        if status == "ok":
            summary += "".join(f"  {fmt.format(result.metrics[name])}" for name, fmt in HEADLINE
                               if name in result.metrics)
        elif result.reason:
            summary += f" ({result.reason})"
        if self._bar is not None:
            self._bar.advance(self._trials)
            self._bar.update(self._steps, visible=False)
            style = STATUS_STYLE.get(status, "red")
            self._bar.console.print(printable(summary), style=style, markup=False, highlight=False)
        else:
            self._print(summary)

    def note(self, text: str) -> None:
        self._print(text)

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(printable(text), markup=False, highlight=False)
        else:
            print(printable(text), file=sys.stderr, flush=True)
