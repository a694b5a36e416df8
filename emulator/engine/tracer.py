"""The tracer: run a program on meta tensors under a dispatch mode and record every aten op as kernel calls.

Each op is classified by `kernels.registry` into a family and costed once per signature (op, argument
shapes and dtypes, module path, phase); repeats only bump a count. A program's stages are traced once
each and multiplied by how many identical copies run (a 126-layer model is one layer times 126), which
is why a 405B training step traces in well under a second.

Module paths: forward ops take the innermost module running them (module hooks). Backward ops take the
module whose forward produced the autograd node being executed (`torch._C._current_autograd_node`), with
nodes created by functional code inheriting the last labelled node's module, since backward runs in
reverse order of the forward. A module that declares `keeps_dtype = True` (a LoRA adapter) has its kernels marked
`precision.KEEP_DTYPE`: a low-precision recipe leaves them in the traced dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.nn.modules import module as nn_module
from torch.utils._python_dispatch import TorchDispatchMode

from emulator.engine.calls import Flow, Trace
from emulator.precision import KEEP_DTYPE, activation_dtype
from emulator.workloads.ops import tracing
from emulator.workloads.program import Program, make_optimizer
from kernels import Cost, KernelCall, rule_for
from kernels.references import torch_dtype
from kernels.tensors import dtype_name, first_float, flat_tensors, nbytes, storage_id

_current_node = getattr(torch._C, "_current_autograd_node", lambda: None)


def _signature(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return (tuple(x.shape), x.dtype)
    if isinstance(x, (list, tuple)):
        return tuple(_signature(y) for y in x)
    if isinstance(x, dict):
        return tuple((k, _signature(v)) for k, v in x.items())
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    return type(x).__name__


class _Recorder(TorchDispatchMode):
    """Records each dispatched op under the current module, phase and multiplier."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[tuple[Any, ...], list[Any]] = {}
        self.unknown: dict[str, int] = {}
        self.module = ""
        self.phase = "forward"
        self.multiplier = 1
        self.enabled = True
        self._costs: dict[tuple[Any, ...], tuple[str, Cost, str]] = {}
        self.state_ids: set[int] = set()
        self.flows: list[Flow] = []
        self._alive: dict[int, torch.Tensor] = {}  # a tensor per storage seen, so that storage ids stay unique
        self.keeps_dtype: set[str] = set()  # module paths whose kernels run in the traced dtype (`KEEP_DTYPE`)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.enabled:
            self._record(func, args, kwargs, out)
        return out

    def _record(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        op = str(func.overloadpacket)
        sig = (op, _signature(args), _signature(kwargs))
        costed = self._costs.get(sig)
        if costed is None:
            found = rule_for(op)
            if found is None:
                self.unknown[op] = self.unknown.get(op, 0) + self.multiplier
                return
            family, rule = found
            t = first_float((args, kwargs))
            if t is None:
                t = first_float(out)
            if t is None:
                t = next(flat_tensors((args, out)), None)
            costed = (family, rule(args, kwargs, out), dtype_name(t.dtype) if t is not None else "none")
            self._costs[sig] = costed
        if self.phase == "backward":
            node = _current_node()
            label = getattr(node, "metadata", {}).get("module") if node is not None else None
            if label:
                self.module = label
        if costed[0] != "view":
            self.flows.append(((self.module, self.phase), costed[0], self._refs((args, kwargs)), self._refs(out),
                               self.multiplier))
        key = (sig, self.module, self.phase)
        entry = self.calls.get(key)
        if entry is None:
            shapes = tuple(tuple(t.shape) for t in flat_tensors(args))
            weight = sum(nbytes(t) for t in flat_tensors(args) if self._is_state(t))
            params = (KEEP_DTYPE,) if self.module in self.keeps_dtype else ()
            self.calls[key] = [costed, op, shapes, self.module, self.phase, self.multiplier, weight, params]
        else:
            entry[5] += self.multiplier

    def _refs(self, x: Any) -> tuple[tuple[int, float], ...]:
        """(storage id, bytes) of each tensor in x: views and autograd's unpacked saved tensors are new Python
        objects over the same storage, so memory is named by its storage (kept alive, so ids stay unique)."""
        out = []
        for t in flat_tensors(x):
            sid = storage_id(t)
            self._alive[sid] = t
            out.append((sid, float(nbytes(t))))
        return tuple(out)

    def _is_state(self, t: torch.Tensor) -> bool:
        base = t._base if t._base is not None else t
        return id(t) in self.state_ids or id(base) in self.state_ids

    def trace(self, **meta: Any) -> Trace:
        calls = tuple(
            KernelCall(
                family=fam, op=op, shapes=shapes, dtype=dt, cost=cost, count=n, module=mod, phase=ph, weight_bytes=w,
                params=params,
            )
            for (fam, cost, dt), op, shapes, mod, ph, n, w, params in self.calls.values()
        )
        return Trace(calls=calls, unknown_ops=dict(self.unknown), flows=tuple(self.flows), **meta)


def _label_nodes(roots: list[Any], boundary: set[Any], name: str) -> None:
    """Label the autograd nodes a module created: walk back from its outputs to its inputs' nodes.

    Inner modules finish first and label their own nodes; an outer module labels only what is left.
    """
    todo = [n for n in roots if n is not None]
    seen: set[Any] = set()
    while todo:
        node = todo.pop()
        if node in seen or node in boundary:
            continue
        seen.add(node)
        node.metadata.setdefault("module", name)
        todo.extend(n for n, _ in node.next_functions if n is not None)


@contextlib.contextmanager
def _module_paths(recorder: _Recorder, root: torch.nn.Module, prefix: str) -> Iterator[None]:
    """Label forward ops with the innermost running module and autograd nodes with their module."""
    names = {id(m): (f"{prefix}.{n}" if n else prefix) for n, m in root.named_modules()}
    recorder.keeps_dtype |= {names[id(m)] for m in root.modules() if getattr(m, "keeps_dtype", False)}
    stack: list[str] = []

    boundaries: list[set[Any]] = []

    def pre(module: torch.nn.Module, args: Any) -> None:
        name = names.get(id(module))
        if name is not None:
            stack.append(recorder.module)
            boundaries.append({t.grad_fn for t in flat_tensors(args) if t.grad_fn is not None})
            recorder.module = name

    def post(module: torch.nn.Module, args: Any, output: Any) -> None:
        name = names.get(id(module))
        if name is None:
            return
        _label_nodes([t.grad_fn for t in flat_tensors(output)], boundaries.pop() if boundaries else set(), name)
        recorder.module = stack.pop() if stack else prefix

    h1 = nn_module.register_module_forward_pre_hook(pre)
    h2 = nn_module.register_module_forward_hook(post)
    try:
        yield
    finally:
        h1.remove()
        h2.remove()


class _SavedBytes:
    """Bytes autograd saves for backward (the activations a training step holds), model state excluded."""

    def __init__(self, state_ids: set[int]) -> None:
        self.state_ids = state_ids
        self.storages: set[int] = set()
        self.bytes = 0.0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(t) not in self.state_ids and id(base) not in self.state_ids and id(base) not in self.storages:
            self.storages.add(id(base))
            self.bytes += nbytes(base)
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


def _fused_adamw(rec: _Recorder, params: list[torch.nn.Parameter]) -> None:
    """Record the fused AdamW update the real runs use (`make_optimizer`), one kernel over all parameters.

    torch.optim refuses fused=True for meta tensors, so the op is called directly with meta states.
    """
    chosen = {id(p) for g in make_optimizer(params).param_groups for p in g["params"]}  # what AdamW updates
    params = [p for p in params if id(p) in chosen]
    grads = [p.grad for p in params if p.grad is not None]
    exp_avgs = [torch.empty_like(p) for p in params]
    exp_avg_sqs = [torch.empty_like(p) for p in params]
    steps = [torch.empty((), dtype=torch.float32, device=p.device) for p in params]
    rec.state_ids |= {id(t) for t in (*grads, *exp_avgs, *exp_avg_sqs)}
    with rec:
        torch._fused_adamw_(list(params), grads, exp_avgs, exp_avg_sqs, [], steps, lr=1e-4, beta1=0.9, beta2=0.999,
                            weight_decay=0.1, eps=1e-8, amsgrad=False, maximize=False)


def trace_callable(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Trace:
    """Trace one call of `fn` (its arguments on the meta device) into kernel calls."""
    rec = _Recorder()
    rec.module = getattr(fn, "__name__", "fn")
    with tracing(), rec:
        fn(*args, **kwargs)
    return rec.trace(phase="forward")


def trace_program(program: Program) -> Trace:
    """Trace one step of a workload program (forward, and backward plus optimizer when training)."""
    rec = _Recorder()
    activation_bytes = 0.0
    for stage in program.stages:
        args, kwargs = stage.make_inputs()
        rec.state_ids = {id(t) for t in (*stage.module.parameters(), *stage.module.buffers(),
                                         *(args[i] for i in stage.state_args))}
        rec.multiplier = stage.count
        rec.phase = "forward"
        rec.module = stage.name
        saved = _SavedBytes(rec.state_ids)
        with tracing(), _module_paths(rec, stage.module, stage.name), rec:
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
                out = stage.module(*args, **kwargs)
            activation_bytes += saved.bytes * stage.count
            if program.train:
                rec.enabled = False
                grad = None if stage.returns_loss else torch.empty_like(out)
                rec.enabled = True
                rec.phase = "backward"
                rec.module = stage.name
                out.backward(grad)
        if program.train:
            params = [p for p in stage.module.parameters() if p.grad is not None]
            if params:
                rec.phase = "optimizer"
                rec.module = stage.name
                _fused_adamw(rec, params)
    return rec.trace(
        phase=program.phase,
        tokens=program.tokens,
        meta={
            "batch_size": program.batch_size,
            "seq_len": program.seq_len,
            "kv_len": program.kv_len,
            "dtype": dtype_name(program.dtype),
            "activation_bytes": activation_bytes,
        },
    )


def traced_dtype(precision: str) -> torch.dtype:
    """The torch dtype a program runs in under a precision: low-precision GEMMs are traced in bf16 and re-costed
    by the roofline in their own dtype (`precision.activation_dtype`)."""
    return torch_dtype(activation_dtype(precision))
