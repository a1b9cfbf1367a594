"""nmaccel: bit-exact N:M sparse INT4/INT8 matmul accelerator toolkit."""
__version__ = "0.1.0"
