"""Measuring on this machine: the only package that touches `torch.cuda` and NVML.

    timer.py     one timing method: warm-up, synchronise, CUDA events or perf_counter, L2 flush, median p20/p80
    speed.py     a small reference kernel timed between measurements (a shared CPU's speed moves)
"""
