"""Inference measurements: weight memory, prefill and decode throughput, perplexity.

Decoding uses the model's KV cache (harness.models.kv_cache); int8 weights come from
harness.techniques.quantization.
"""

from harness.inference.measure import (
    decode_tokens_per_s,
    greedy_decode,
    linear_weight_bytes,
    perplexity,
    prefill_tokens_per_s,
    weight_bytes,
)

__all__ = ["decode_tokens_per_s", "greedy_decode", "linear_weight_bytes", "perplexity",
           "prefill_tokens_per_s", "weight_bytes"]
