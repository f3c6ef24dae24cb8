"""T'yr-the-Pruner-style sparsity allocation (arXiv 2503.09657): ladders of locally pruned levels
with weight update per block, then an evolutionary search of one level per block under the exact
sparsity, coarse to fine. The `tyr` method (gisp.methods.tyr) runs it for each target."""
