"""Progress of training, sampling, evaluation and export: a tqdm bar on a terminal, a plain line every N
seconds in a log file."""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """mode: auto (bar when `stream` is a terminal, lines otherwise) | bar | lines | off.

    Lines mode never writes a carriage return: one line per `every` seconds and one at the end. `unit` names
    what is counted: 'step' (training iterations, rate in it/s) or e.g. 'samples' (rate in samples/s)."""

    def __init__(
        self,
        mode: str,
        total: int,
        initial: int = 0,
        desc: str = "",
        every: float = 30.0,
        stream=None,
        enabled: bool = True,
        unit: str = "step",
    ):
        self.stream = stream if stream is not None else sys.stdout
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode if enabled else "off"
        self.total, self.step, self.desc, self.every, self.unit = total, initial, desc, every, unit
        self.postfix: dict[str, str] = {}
        self._start_step, self._start = initial, time.time()
        self._last_line = self._start
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                dynamic_ncols=True,
                desc=desc,
                file=self.stream,
                unit="it" if unit == "step" else unit,
            )

    def update(self, n: int = 1) -> None:
        self.step += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.time()
            if now - self._last_line >= self.every or self.step >= self.total:
                self._write_line(now)

    def set_postfix(self, values: dict) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix)

    def _write_line(self, now: float) -> None:
        self._last_line = now
        done = self.step - self._start_step
        rate = done / max(1e-9, now - self._start)
        eta = (self.total - self.step) / rate if rate > 0 else 0.0
        extra = "".join(f" {k}={v}" for k, v in self.postfix.items())
        rate_unit = "it" if self.unit == "step" else self.unit
        share = 100 * self.step / max(1, self.total)
        self.stream.write(
            f"{self.desc} {self.unit} {self.step}/{self.total} ({share:.1f}%) "
            f"{rate:.2f} {rate_unit}/s eta {_duration(eta)}{extra}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def command_progress(
    total: int, desc: str, enabled: bool = True, unit: str = "samples", every: float = 10.0
) -> Progress:
    """Progress of a command other than `train` (sample, eval, export) on stderr, so that stdout keeps the
    command's result (eval prints JSON): a bar on a terminal, a plain line every `every` seconds in a log."""
    return Progress("auto" if enabled else "off", total=total, desc=desc, every=every, stream=sys.stderr, unit=unit)
