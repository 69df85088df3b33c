"""xeontl: reproduce "Distributed Transfer Learning with 4th Gen Intel Xeon Scalable Processors"."""

__version__ = "0.1.0"

SYNTHETIC_NOTICE = "synthetic data — not the paper's dataset"
RANDOM_WEIGHTS_NOTICE = "random backbone — not ImageNet"
