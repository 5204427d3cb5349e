"""Probing features: what a network answers to a few learned inputs.

A network's weights define a function. Feeding every network the same few inputs ("probes")
and reading its outputs gives features that are invariant to every symmetry of weight space
(permuted hidden neurons, rescalings that leave the function unchanged) by construction, and
that exist for any architecture mapping the same inputs to the same outputs, so networks of
mixed architectures are compared on one footing. The probes are parameters, learned together
with the predictor that reads the answers (gradients flow through each probed network into the
probes; the networks' own weights stay fixed).

Probes complement the parameter graph (:mod:`metanets.gmn`): the graph shows how a network is
built, the probes how it behaves. :class:`~metanets.gmn.GMN` reads both when
``GMNConfig.probes`` is set.

References: Kahana et al., "Deep Linear Probe Generators for Weight Space Learning", ICLR 2025
(learned probes, the deep linear generator used here); Kofinas et al., "Graph Neural Networks
for Learning Equivariant Representations of Neural Networks", ICLR 2024 (probe features as
inputs of a neural-graph metanetwork).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

#: latent size of each probe before the linear generator expands it to an input
PROBE_LATENT = 32
#: how probes start: from noise, or from unlabelled inputs of the task
PROBE_INITS = ("noise", "data")
#: with init="data", the generator's share of a probe starts at this fraction of unit scale
DATA_GENERATOR_SCALE = 0.1


def task_probe_inputs(dataset: str, probes: int, seed: int = 0,
                      data_root: str | None = None) -> Tensor:
    """``probes`` training images of an image task, drawn at random with ``seed`` (no labels):
    where ``init="data"`` probes start."""
    from nas.tasks import load_task

    task = load_task(dataset, data_root)
    if task.level != "image":
        raise ValueError(f"probes start from images; dataset {dataset!r} is a {task.level} task")
    images = task.dataset.x["train"]
    pick = torch.randperm(images.size(0), generator=torch.Generator().manual_seed(seed))[:probes]
    return images[pick].clone()


@dataclasses.dataclass
class ProbedNetwork:
    """A network a metanetwork may probe: a module of its architecture and its weights.

    ``state`` (parameters and buffers, e.g. a state_dict) is what the module computes with; the
    module's own tensors are never read or changed. The module is run in eval mode
    (BatchNorm uses the stored running statistics).

    Args:
        module: any module of the network's architecture.
        state: its weights by state_dict name.
        input_shape: shape of one input without the batch axis, e.g. ``(1, 14, 14)``.
    """

    module: nn.Module
    state: dict[str, Tensor]
    input_shape: tuple[int, ...]

    def __call__(self, inputs: Tensor) -> Tensor:
        """Outputs ``(P, C)`` for a batch of inputs ``(P, *input_shape)``."""
        self.module.eval()
        return functional_call(self.module, self.state, (inputs,))


class ProbeEncoder(nn.Module):
    """Embeds networks by their log-probabilities on learned probes.

    The probes come from a deep linear generator ``probes = base + W_k ... W_1 z`` over fixed
    latent codes ``z`` (ProbeGen): the same function class as free inputs, but the factorised
    form regularises them towards structured, low-rank inputs. ``base`` is zero for probes
    learned from noise (``init="noise"``); with ``init="data"`` it is a learned offset that
    :meth:`start_from` sets to unlabelled inputs of the task (the generator then starts near
    zero), so the probes start as real inputs and move from there. Either way the probes are
    parameters of the metanetwork: a trained one predicts from a network alone.

    Args:
        probes: number of probe inputs ``P``.
        input_shape: shape of one input of the probed networks.
        outputs: outputs ``C`` of the probed networks (classes).
        hidden: size of the embedding.
        generator_layers: linear layers of the probe generator.
        init: ``"noise"`` or ``"data"`` (see above).

    Shapes:
        ``forward(networks)``: ``B`` networks -> ``(B, hidden)``; ``responses``: ``(B, P, C)``.
    """

    def __init__(self, probes: int, input_shape: Sequence[int], outputs: int, hidden: int,
                 generator_layers: int = 2, init: str = "noise") -> None:
        super().__init__()
        if probes < 1 or outputs < 1 or not input_shape:
            raise ValueError(
                f"probes ({probes}) and outputs ({outputs}) must be >= 1 and input_shape "
                f"{tuple(input_shape)!r} non-empty")
        if init not in PROBE_INITS:
            raise ValueError(f"probe init {init!r} is not among the choices {list(PROBE_INITS)}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.outputs, self.init = outputs, init
        size = int(torch.tensor(self.input_shape).prod())
        self.register_buffer("latent", torch.randn(probes, PROBE_LATENT))
        if init == "data":
            self.base = nn.Parameter(torch.zeros(probes, *self.input_shape))
        else:
            self.register_buffer("base", torch.zeros(probes, *self.input_shape))
        widths = [PROBE_LATENT] * generator_layers + [size]
        self.generator = nn.Sequential(
            *(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:])))
        self.embed = nn.Sequential(
            nn.Linear(probes * outputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # unit-variance probes at initialisation (the task's inputs are standardised)
        for layer in self.generator:
            nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
        for layer in self.embed:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    @torch.no_grad()
    def start_from(self, inputs: Tensor) -> None:
        """Start the probes at ``inputs`` ``(P, *input_shape)`` (``init="data"`` only)."""
        if self.init != "data":
            raise ValueError(f"start_from needs init='data', this encoder has init={self.init!r}")
        if tuple(inputs.shape) != tuple(self.base.shape):
            raise ValueError(f"start_from got inputs of shape {tuple(inputs.shape)}, expected "
                             f"{tuple(self.base.shape)} (probes x input shape)")
        self.base.copy_(inputs)
        self.generator[-1].weight.mul_(DATA_GENERATOR_SCALE)

    def probe_inputs(self) -> Tensor:
        """The current probes ``(P, *input_shape)``."""
        return self.base + self.generator(self.latent).view(-1, *self.input_shape)

    def responses(self, networks: Sequence[ProbedNetwork]) -> Tensor:
        """Log-probabilities ``(B, P, C)`` of every network on every probe."""
        inputs = self.probe_inputs()
        out = []
        for net in networks:
            if tuple(net.input_shape) != self.input_shape:
                raise ValueError(
                    f"a network taking inputs of shape {tuple(net.input_shape)} cannot be probed "
                    f"with probes of shape {self.input_shape}")
            logits = net(inputs)
            if logits.shape != (inputs.size(0), self.outputs):
                raise ValueError(
                    f"a probed network answered with shape {tuple(logits.shape)}, expected "
                    f"{(inputs.size(0), self.outputs)} (probes x outputs)")
            out.append(torch.log_softmax(logits.float(), dim=-1))
        return torch.stack(out)

    def forward(self, networks: Sequence[ProbedNetwork]) -> Tensor:
        return self.embed(self.responses(networks).flatten(1))

    def __repr__(self) -> str:
        return (f"ProbeEncoder(probes={self.latent.size(0)}, input_shape={self.input_shape}, "
                f"outputs={self.outputs}, init={self.init!r})")


__all__ = ["PROBE_INITS", "PROBE_LATENT", "ProbeEncoder", "ProbedNetwork", "task_probe_inputs"]
