"""Data shipped with dreamerctl: the official DreamerV3 learning curves (README.md says
where they come from and their licence)."""
