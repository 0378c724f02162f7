"""Why an answer: which sources and which words of the prompt it leaned on.

``explainer.explain`` runs the passes of ``passes`` (eager attention over prompt and
answer, ablations of each source and of the history, with prompts rebuilt by
``prompt``) and returns an ``Explanation`` (``types``, with ``ExplainConfig``);
``textspans`` cuts answers into sentences and words; ``view`` renders an explanation
for the web page; ``citations`` puts the ``[n]`` markers after the answer's
sentences, by word overlap when the turn ends and from an explanation when there
is one.

Works on a finished turn and its loaded model; knows nothing about the web surface,
the store or how the turn was generated.
"""
