"""dreamerctl: train, evaluate, record and compare DreamerV3 agents in PyTorch."""

__version__ = "0.1.0"
