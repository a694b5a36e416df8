"""Validation: run scenarios for real, compare measured with predicted, and predicted with published runs.

    run.py                  `emulator run`: execute a scenario here, measured beside predicted
    validate.py             `emulator validate`: whole workloads on this machine
    distributed.py          torchrun entry: a plan's collectives measured on real ranks
    published_training.py   predicted vs published Megatron-LM training runs (A100, 2021-22)
    published_hopper.py     predicted vs published Megatron-Core runs on H100 (NeMo, Megatron-Bridge)
    published_serving.py    predicted vs published MLPerf Inference results
"""
