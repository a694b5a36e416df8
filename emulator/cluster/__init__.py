"""Cluster training model: plans, per-rank programs, memory, network, schedules, step time and goodput.

    plan.py      Plan: the parallel layout, validated against the model with advice
    shard.py     the per-rank program: the sharded model traced, plus its collectives as kernel calls
    network.py   collective times on the system's scale-up domain and scale-out fabric
    memory.py    memory per device: sharded model state, activations in flight (Korthikanti et al. 2022)
    schedule.py  pipeline bubble and communication overlap
    step.py      the one training step: stage times, collectives, schedule -> StepBreakdown
    training.py  predict_training: step time, throughput, MFU/HFU, memory, time-to-train
    goodput.py   failures, checkpoints and restarts -> effective time-to-train
"""

from emulator.cluster.plan import Plan, check_plan, plan_from
from emulator.cluster.training import TrainingPrediction, predict_training

__all__ = ["TrainingPrediction", "Plan", "check_plan", "plan_from", "predict_training"]
