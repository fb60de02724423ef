"""Interactive attention explorer: one self-contained, offline HTML page per run.

``python -m attnlab.explore vit ...`` and ``python -m attnlab.explore gpt ...``
(rules ``explore_vit`` / ``explore_gpt``) run a checkpoint on a few inputs with
``return_attention=True`` and write ``attention.html``: the attention maps,
quantised (:mod:`attnlab.explore.pack`), inlined beside small hand-written
JavaScript (``assets/``), so the page opens from disk with no network at all.
``python -m attnlab.explore views`` screenshots every view of a page in
headless Chromium (:mod:`attnlab.explore.views`, needs playwright).
"""
