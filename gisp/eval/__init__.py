"""Evaluation harness: multiple-choice readers and accuracy, size and FLOPs, CPU throughput.

Perplexity on text lives in `gisp.evaluation` (which the pruner's held-out metrics use); this
package adds what benchmarking pruned checkpoints needs on top of it.
"""

from gisp.eval.harness import evaluate_model, load_for_eval
from gisp.eval.mc import MC_FORMATS, detect_mc_format, read_mc
from gisp.eval.multiple_choice import ChoiceResult, choice_scores
from gisp.eval.size import SizeReport, model_size, model_structure
from gisp.eval.throughput import ThroughputResult, measure_throughput

__all__ = [
    "MC_FORMATS",
    "ChoiceResult",
    "SizeReport",
    "ThroughputResult",
    "choice_scores",
    "detect_mc_format",
    "evaluate_model",
    "load_for_eval",
    "measure_throughput",
    "model_size",
    "model_structure",
    "read_mc",
]
