"""Named columns and type ids of the graphs: never index a feature tensor with a bare number.

Parameter graph (:func:`~metanets.graphs.to_parameter_graph`), one node per neuron or channel:

- ``x`` ``(N, len(NodeFeature))``: per-neuron parameters, see :class:`NodeFeature`; a column a
  neuron does not have is 0.
- ``node_type`` ``(N,)`` uint8 (:class:`NodeType`), ``node_layer`` ``(N,)`` int16 (index of the
  operation that created the neuron, 0 = network input, see ``layer_names``), ``node_head``
  ``(N,)`` int16 (attention head or normalisation group of the neuron, -1 if none).
- ``edge_index`` ``(2, E)`` int64, one edge per weight between two neurons; a convolution has
  one edge per (input channel, output channel) and its kernel on the edge.
- ``edge_attr`` ``(E, kernel_width)`` float: the weight values. Column ``EdgeFeature.WEIGHT + j``
  holds the kernel entry at flattened kernel position ``edge_kernel_pos + j`` (row-major over
  the kernel's spatial dims, see ``layer_kernels``); entries ``j >= edge_kernel_len`` are zero
  padding. A kernel with more entries than ``kernel_width`` is split over several parallel
  edges (chunks). A dense weight has ``edge_kernel_len == 1``; identity edges have weight 1.
- ``edge_kernel_pos`` int16, ``edge_kernel_len`` uint8, ``edge_type`` uint8 (:class:`EdgeType`),
  ``edge_layer`` int16, ``edge_head`` int16 (attention head, polynomial order of a ``HOP`` edge,
  or ARMA stack; -1 if none).
- ``scalars`` ``(S,)`` float64: per-layer scalars (GIN's eps, BatchNorm's batch counter).

Computation graph (:func:`~metanets.graphs.to_computation_graph`), one node per operation: see
:class:`OpFeature`.
"""
from __future__ import annotations

import enum


class NodeFeature(enum.IntEnum):
    """Columns of a parameter graph's ``x``."""

    BIAS = 0             # additive bias of the layer that computes the neuron
    NORM_WEIGHT = 1      # scale (gamma) of a normalisation layer
    NORM_BIAS = 2        # shift (beta) of a normalisation layer
    RUNNING_MEAN = 3     # BatchNorm running mean
    RUNNING_VAR = 4      # BatchNorm running variance
    ATTENTION_SRC = 5    # GAT attention vector entry, source side (GATv2: its one vector)
    ATTENTION_DST = 6    # GAT attention vector entry, target side


class EdgeFeature(enum.IntEnum):
    """Columns of a parameter graph's ``edge_attr`` (kernel entries follow ``WEIGHT``)."""

    WEIGHT = 0           # the weight, or the first kernel entry of the edge's chunk


class NodeType(enum.IntEnum):
    """What a parameter-graph node is (``node_type``)."""

    INPUT = 0            # a network input feature / channel
    HIDDEN = 1           # output neuron or channel of a parametric layer
    OUTPUT = 2           # a network output feature
    NORM = 3             # output of a normalisation layer (one per channel)
    SUM = 4              # residual sum (``a + b``): inputs arrive over IDENTITY edges
    PRODUCT = 5          # elementwise product (gating)
    POSITION = 6         # a (channel, spatial position) neuron created by flatten
    QUERY = 7            # attention query neuron
    KEY = 8              # attention key neuron
    VALUE = 9            # attention value / message neuron
    TOKEN = 10           # an embedding-table row (one-hot input)


class EdgeType(enum.IntEnum):
    """What a parameter-graph edge is (``edge_type``)."""

    DENSE = 0            # weight of a linear map (Linear, projections)
    CONV = 1             # kernel of a convolution (Conv1d/2d)
    IDENTITY = 2         # weight-free: residual, sum, normalisation, flatten, aggregation
    MESSAGE = 3          # graph-conv weight applied to neighbour messages
    ROOT = 4             # graph-conv weight applied to the node itself
    HOP = 5              # polynomial-filter weight of order ``edge_head`` (Cheb, TAG)
    RECURRENT = 6        # ARMA recursion weight
    EMBEDDING = 7        # an embedding-table entry
    ATTENTION = 8        # weight-free coupling of query and key neurons


class OpFeature(enum.IntEnum):
    """Columns of a computation graph's ``x`` (shape of the op's main weight, GHN style)."""

    NUM_PARAMS = 0       # parameters of the op (all tensors)
    OUT_DIM = 1          # main weight's first dim (output features / channels)
    IN_DIM = 2           # main weight's second dim
    KERNEL_H = 3         # kernel height (1 for dense weights)
    KERNEL_W = 4         # kernel width (1 for dense and 1-d kernels)
    HAS_BIAS = 5         # 1 if the op has a bias
    HEADS = 6            # attention heads (1 if none)


class OpEdgeFeature(enum.IntEnum):
    """Columns of a computation graph's ``edge_attr``."""

    DISTANCE = 0         # shortest data-flow path length: 1 = data flow, >1 = virtual edge
