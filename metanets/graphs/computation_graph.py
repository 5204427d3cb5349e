OP_TYPES=()
def to_computation_graph(*a): raise NotImplementedError
