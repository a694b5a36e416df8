"""Cluster training model: plans, per-rank programs, memory, network, schedules, step time and goodput.

    plan.py      Plan: the parallel layout, validated against the model with advice
    shard.py     the per-rank program: the sharded model traced, plus its collectives as kernel calls
    network.py   collective times on the system's scale-up domain and scale-out fabric
    memory.py    memory per device: sharded model state, activations in flight (Korthikanti et al. 2022)
    schedule.py  pipeline bubble and communication overlap
    training.py  predict_training: step time, throughput, MFU/HFU, time-to-train
    goodput.py   failures, checkpoints and restarts -> effective time-to-train
"""

from emulator.cluster.plan import Plan, check_plan, plan_from
from emulator.cluster.training import ClusterPrediction, predict_training

__all__ = ["ClusterPrediction", "Plan", "check_plan", "plan_from", "predict_training"]
