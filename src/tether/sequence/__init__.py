"""Reset-aware multi-step unroll of a recurrent core over ``[T, B, ...]`` with episode starts.

``episode_starts[t, b]`` is True when ``x[t, b]`` is the first observation of a new episode: the
state of row ``b`` restarts from zeros before step ``t``. :func:`unroll_reference` is the per-step
masked loop CleanRL and sb3-contrib write; :func:`unroll` computes the same outputs, final state
and gradients with one fused call of the module per layer.

How :func:`unroll` keeps one fused call with resets inside it (the ``"spliced"`` strategy): each
row of the batch is a *lane* of the call, and before every episode start a *reset step* is spliced
into that lane. A reset step feeds an extra input column whose weight drives the LSTM's input and
forget gates (the GRU's reset and update gates) to ``-1e30``; the sigmoids saturate to exactly 0,
so the step's state and output are exactly zero and no gradient crosses it: what multiplying the
state by 0 does in the reference loop. Lanes with fewer starts than the busiest one are padded at
the end with *hold* steps (forget gate exactly 1, input and output gates exactly 0), which keep the
LSTM cell state bit for bit; the final ``h`` is read from the output at each row's last real step.
Cost: one call per layer that is ``K`` steps longer than ``T`` (``K``: most starts in one row),
plus two gathers (into and out of lane order) whose gradients are gathers too.

The other strategies: ``"padded"`` (every episode segment its own lane, zero-padded; chosen when
starts are so dense that it pads less), ``"chunked"`` (one call between consecutive start times,
the state masked between; for ``nn.RNN``, subclasses and hooked modules) and ``"reference"``.
Planning reads the starts on the host with numpy, once per call, or once for several cores of one
kind through :func:`plan_unroll`.

The rooms: ``_plan`` (the lane layouts, numpy only), ``_lanes`` (running a layout: the autograd
gathers and the saturated-gate columns), ``_strategy`` (the choice, the one-time exactness probe
and :class:`UnrollPlan`), ``_reference`` (the per-step loop), ``_unroll`` (:func:`unroll`) and
``_checks`` (the input checks).

:func:`unroll_segments` (``_segments``) is the same engine's other restart: each segment starts
from a *given* state (a replay's stored state at a slice start, TorchRL's recurrent mode at every
``is_init``) rather than from zeros, and the state at every segment's end comes back.
"""

from tether.sequence._segments import Segments, unroll_segments
from tether.sequence._strategy import Strategy, UnrollPlan
from tether.sequence._unroll import plan_unroll, unroll, unroll_reference

__all__ = [
    "Segments", "Strategy", "UnrollPlan", "plan_unroll", "unroll", "unroll_reference", "unroll_segments",
]
