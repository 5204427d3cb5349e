"""Errors of graph conversion."""
from __future__ import annotations


class UnsupportedOperationError(ValueError):
    """An operation of the traced network has no graph conversion.

    Args:
        op: the operation (module class, function or method name).
        path: module path where it occurs (``blocks.2.attn``; ``""`` for the root module).
        supported: names of the supported operations.
        reason: why it is unsupported, if not simply unknown.
    """

    def __init__(self, op: str, path: str, supported: list[str], reason: str = "") -> None:
        self.op, self.path, self.supported = op, path, supported
        where = f"at '{path}'" if path else "in the root module"
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"unsupported operation {op!r} {where}{why}; supported operations: {supported}"
        )


class UntraceableModuleError(ValueError):
    """``torch.fx`` symbolic tracing of the network failed."""

    def __init__(self, module_name: str, error: Exception) -> None:
        super().__init__(
            f"could not trace {module_name} with torch.fx symbolic tracing: "
            f"{type(error).__name__}: {error}. Tracing fails on Python control flow that "
            "depends on tensor values (if/for over a tensor, .item(), data-dependent shapes). "
            "Mark the offending submodule as a leaf so it is not traced inside: pass "
            "leaf_modules=(TheSubmoduleClass,) (parameter-free leaves convert as elementwise "
            "ops) and, if it has parameters, handlers={TheSubmoduleClass: handler} that adds "
            "its neurons and weights (see metanets.graphs.ModuleHandler)."
        )
