"""Pruning (N:M along K), quantization and the packed weight format."""
from nmaccel.pack.api import pack_weights
from nmaccel.pack.compress import compress_model
from nmaccel.pack.format import PackedWeights
from nmaccel.pack.prune import (hessian, magnitude_scores, nm_mask, obs_factor, prune,
                                prune_unstructured, sparsegpt, unstructured_mask, wanda_scores)
from nmaccel.pack.quant import (QuantGrid, fit_lloyd_max, fit_uniform, quantize_activations,
                                quantize_weights)

__all__ = [
    "pack_weights", "PackedWeights", "compress_model",
    "prune", "prune_unstructured", "nm_mask", "unstructured_mask", "magnitude_scores",
    "wanda_scores", "sparsegpt", "hessian", "obs_factor",
    "QuantGrid", "fit_uniform", "fit_lloyd_max", "quantize_weights", "quantize_activations",
]
