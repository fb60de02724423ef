"""DialogueGPT on tiny-shakespeare dialogues (homework Problem 4).

Modules: ``model`` (DialogueGPT, DialogueLoss, load_checkpoint), ``scoring``
(the validation / evaluation scorer shared by trainer and evaluator),
``data`` (loading dialogues.pt / vocab.json), ``train``
(``python -m attnlab.gpt.train``), ``ngram`` (the Kneser-Ney baseline,
``python -m attnlab.gpt.ngram``), ``evaluate`` (``python -m attnlab.gpt.evaluate``),
``generate`` (``python -m attnlab.gpt.generate``).
"""

from attnlab.gpt.model import DialogueGPT, DialogueLoss, load_checkpoint

__all__ = ["DialogueGPT", "DialogueLoss", "load_checkpoint"]
