"""Calibration: microbenchmark sweeps measured on this machine, fitted into per-family efficiencies.

    sweeps.py    the benchmark points of every kernel family
    command.py   measure the points, fit them, write the calibration file (`emulator calibrate`)
    fit.py       efficiencies from (traced kernel calls, measured seconds) pairs
"""
