"""``python -m tether ...`` runs the ``tether`` command (train, eval, plot)."""

from tether._entry import main

if __name__ == "__main__":
    raise SystemExit(main())
