"""Software stacks as data: frameworks (megatron-core, torchtitan, eager) and serving engines (trtllm, vllm,
sglang, eager), each a sourced profile the engine applies to a traced program."""

from emulator.stacks.load import (
    DEFAULT_STACK,
    SCENARIO_KEY,
    list_stacks,
    load_stack,
    parse_settings,
    runs_on,
    stack_for,
    stack_of,
)
from emulator.stacks.profile import ITEMS, OVERLAP_CLASSES, STACK_KINDS, Item, StackProfile
from emulator.stacks.values import GRAPH_SCOPES, RECOMPUTE_MODULES

__all__ = ["DEFAULT_STACK", "GRAPH_SCOPES", "ITEMS", "OVERLAP_CLASSES", "RECOMPUTE_MODULES", "SCENARIO_KEY",
           "STACK_KINDS", "Item", "StackProfile", "list_stacks", "load_stack", "parse_settings", "runs_on", "stack_for",
           "stack_of"]
