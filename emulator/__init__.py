"""emulator: predict and measure AI workloads on accelerator clusters."""

__version__ = "0.1.0"
