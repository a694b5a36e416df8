"""Hardware-free kernel library: what each aten op costs in FLOPs and bytes, never in seconds.

This package imports torch only (never `emulator`). `registry.rule_for(op)` maps an aten op to its kernel
family and cost rule; `roofline` in the emulator alone turns these counts into seconds on a profile.
"""

from kernels.cost import Cost, KernelCall
from kernels.registry import FAMILIES, classify, rule_for

__all__ = ["FAMILIES", "Cost", "KernelCall", "classify", "rule_for"]
