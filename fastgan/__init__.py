"""fastgan: GANs that produce images at a higher resolution than they were trained on."""

__version__ = "0.1.0"
