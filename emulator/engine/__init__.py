"""The engine: traced counts become seconds, on any device profile, without touching a device.

    tracer.py       a torch program on meta tensors -> kernel calls (de-duplicated, with counts)
    calls.py        Trace, those kernel calls (torch-free, as every later stage reads them)
    trace.py        a workload's trace by shape: in memory, on disk, or traced (torch only then)
    diskcache.py    traces kept on disk between processes, keyed by their inputs and the code
    efficiency.py   how close each kernel family gets to the peaks: spec defaults, calibrated tables
    calibration.py  calibration files: reading, checking, lookup per profile (calibrated/transferred/spec)
    roofline.py     the one place counts become seconds: kernel_time, predict_calls
    timing.py       Timing, the one result type of emulate and run
    memory.py       memory per device: model state, activations, KV cache, allowance
    predict.py      one device: a scenario's step traced and timed
"""
