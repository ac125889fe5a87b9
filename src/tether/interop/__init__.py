"""Bridges from tether to other RL libraries' pipelines; each needs its own extra.

- :mod:`tether.interop.torchrl` (``pip install 'tether-rl[torchrl]'``): ``LifecycleCheck``, a
  TorchRL env transform that checks the recurrent state a policy is fed and returns, and
  ``LSTMModule`` / ``GRUModule``, drop-ins for TorchRL's on tether's engine.

Importing this package imports no other library; each submodule imports its own.
"""
