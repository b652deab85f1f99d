"""Progress from inside compiled samplers: a host callback per network evaluation.

A sampler is one XLA program (a ``lax.scan`` over its steps), so a Python progress bar around
it moves once per call. :func:`with_step_callback` wraps a ``model_fn`` so that every network
evaluation also runs ``callback()`` on the host (``jax.debug.callback``, unordered, with no
operands: under ``vmap`` — over patches or posterior samples — it runs once per evaluation of
the whole batch, not once per element). Every sampler calls its ``model_fn`` once per network
evaluation, so the callback count is the NFE and the sampler itself is untouched. The
callback costs one host round trip per step: 10–90 µs measured on the 2-core development
machine, against milliseconds (the 16-px test U-Net) to a second (``photos64`` at batch 16) of
network per step.
"""

from __future__ import annotations

import threading

__all__ = ["with_step_callback", "StepBar"]


def with_step_callback(model_fn, callback):
    """``model_fn(x, t, cond)`` that also calls ``callback()`` on the host at every call, from
    inside ``jit`` / ``scan`` / ``vmap`` / autodiff (values unchanged)."""
    import jax

    def wrapped(x, t, cond=None):
        jax.debug.callback(callback)
        return model_fn(x, t, cond)

    return wrapped


class StepBar:
    """A tqdm bar fed by :func:`with_step_callback` (call the object as the callback).

    Nothing is printed until the total is known (:meth:`set_total`, e.g. once tracing has told
    the NFE) or the first step runs, so an error raised while tracing leaves stderr clean; setting
    the total before the first step also starts the clock then, so compiling does not count in
    the rate and the ETA. The callback runs on the runtime's callback thread, hence the lock.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "step"):
        self._lock = threading.Lock()
        self.count = 0
        self._desc, self._unit, self._total = desc, unit, total
        self._postfix = ""
        self.bar = None

    def _open(self):  # with the lock held
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self._total, desc=self._desc, unit=self._unit, leave=False,
                            dynamic_ncols=True)
            if self._postfix:
                self.bar.set_postfix_str(self._postfix, refresh=False)
        return self.bar

    @property
    def total(self) -> int | None:
        return self._total

    def set_total(self, total: int) -> None:
        with self._lock:
            self._total = total
            if self.bar is None or self.count == 0:
                self._open().reset(total=total)
            elif self.bar.total != total:
                self.bar.total = total
                self.bar.refresh()

    def set_postfix(self, text: str) -> None:
        with self._lock:
            self._postfix = text
            if self.bar is not None:
                self.bar.set_postfix_str(text, refresh=False)

    def __call__(self) -> None:
        with self._lock:
            self.count += 1
            self._open().update(1)

    def close(self) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.close()
