"""Measuring models, in one package: `perplexity` (text perplexity, choice NLL, the pruner's
held-out metrics), `choice` (multiple-choice accuracy) with its file `readers` (ARC, HellaSwag,
COPA, jsonl), `size` (parameters, bytes, FLOPs), `throughput` (prefill/decode tokens/s) and the
`harness` that `gisp eval` and the benchmarks call.
"""

from gisp.eval.choice import ChoiceResult, choice_scores
from gisp.eval.harness import evaluate_model, load_for_eval
from gisp.eval.perplexity import file_perplexity, heldout_metrics, sequence_perplexity
from gisp.eval.readers import MC_FORMATS, detect_mc_format, read_mc
from gisp.eval.size import SizeReport, folder_bytes, model_size, model_structure, parameter_count
from gisp.eval.throughput import ThroughputResult, measure_throughput

__all__ = [
    "MC_FORMATS",
    "ChoiceResult",
    "SizeReport",
    "ThroughputResult",
    "choice_scores",
    "detect_mc_format",
    "evaluate_model",
    "file_perplexity",
    "folder_bytes",
    "heldout_metrics",
    "load_for_eval",
    "measure_throughput",
    "model_size",
    "model_structure",
    "parameter_count",
    "read_mc",
    "sequence_perplexity",
]
