"""R2D2: recurrent off-policy Q-learning from a sequence replay of stored states."""

__all__: list[str] = []
