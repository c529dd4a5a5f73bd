"""Distilled Decoding (DD, Liu et al., arXiv 2412.17153): one- and two-step students of an image AR model.

- :mod:`decoding.dd.flow`: the per-token flow, a closed-form flow-matching ODE from Gaussian noise
  to a categorical over codebook vectors, solved deterministically.
- :mod:`decoding.dd.process`: :class:`~decoding.dd.process.FlowTokens`, the autoregressive process
  whose token choice is that flow: through the teacher it maps a noise sequence to a token sequence.
- :mod:`decoding.dd.pairs`: (noise, tokens) pair generation in resumable shards.
- :mod:`decoding.dd.student`: the student network (teacher weights, continuous inputs) and its engine model.
- :mod:`decoding.dd.steps`: :class:`~decoding.dd.steps.DDProcess`, the 1- or 2-step process of the student.
- :mod:`decoding.dd.naive`: the naive baseline (every token at once from one teacher pass).
"""
